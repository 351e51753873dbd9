package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

// An empty namespace path is an error, never the caller's own namespace.
func TestEmptyNetNSIsNotTheHost(t *testing.T) {
	rs := mustBuild(t, DefaultConfig())
	if _, err := Apply(context.Background(), rs, WithNetNS("")); err == nil || !strings.Contains(err.Error(), "network namespace path is empty") {
		t.Errorf("Apply with WithNetNS(\"\"): %v", err)
	}
	if _, err := ReadStatus(context.Background(), rs, WithNetNS("")); err == nil {
		t.Error("ReadStatus with WithNetNS(\"\") succeeded")
	}
	if _, err := Remove(context.Background(), DefaultTable, WithNetNS("")); err == nil {
		t.Error("Remove with WithNetNS(\"\") succeeded")
	}
	// A path that is no namespace: a file, and a FIFO (which must not hang).
	file := t.TempDir() + "/file"
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := t.TempDir() + "/fifo"
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, fifo, "/proc/self/ns/uts"} {
		if _, err := ReadStatus(context.Background(), rs, WithNetNS(p)); err == nil || !strings.Contains(err.Error(), "not a network namespace") {
			t.Errorf("ReadStatus in %s: %v, want not a network namespace", p, err)
		}
	}
}

// A table of ftpnft's stays ftpnft's when its rules are flushed or rules
// are added by hand: status says what changed, install repairs it,
// uninstall removes it. Ownership is in the table's user data.
func TestHandEditedTableIsStillOwned(t *testing.T) {
	k := &fakekernel.Kernel{}
	rs := mustBuild(t, DefaultConfig())
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	k.FlushTable(DefaultTable)
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Installed || !st.Owned || st.Matches || !st.Modified {
		t.Fatalf("status of a flushed table = installed %v owned %v matches %v modified %v", st.Installed, st.Owned, st.Matches, st.Modified)
	}
	if !slices.Contains(st.Differences, `chain input: rule "established" missing`) {
		t.Errorf("differences of a flushed table: %q", st.Differences)
	}
	res, err := Apply(context.Background(), rs, WithKernel(k))
	if err != nil || !res.Changed || !res.Repaired {
		t.Fatalf("install over a flushed table = %+v, %v; want repaired", res, err)
	}
	if st, err := ReadStatus(context.Background(), rs, WithKernel(k)); err != nil || !st.Matches || st.Modified || len(st.Differences) != 0 {
		t.Fatalf("status after repair = %+v, %v", st, err)
	}

	// A rule without ftpnft's comment, and an interval set of ports.
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable}
	set := &nftables.Set{Table: tbl, Name: "svc", KeyType: nftables.TypeInetService, Interval: true}
	if err := other.AddSet(set, []nftables.SetElement{{Key: []byte{0, 22}}, {Key: []byte{0, 23}, IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	other.AddRule(&nftables.Rule{Table: tbl, Chain: &nftables.Chain{Name: "input", Table: tbl}, Exprs: accept.exprs(),
		UserData: userdata.AppendString(nil, userdata.TypeComment, "mine")})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err = ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatalf("status with a set of ports added by hand: %v", err)
	}
	for _, want := range []string{`^set svc is not in the configuration$`, `^chain input: rule handle [1-9][0-9]* with comment "mine" is not ftpnft's$`} {
		if !slices.ContainsFunc(st.Differences, regexp.MustCompile(want).MatchString) {
			t.Errorf("differences %q lack %q", st.Differences, want)
		}
	}
	if !st.Owned || !st.Modified {
		t.Errorf("hand-edited table: owned %v modified %v", st.Owned, st.Modified)
	}
	if res, err := Apply(context.Background(), rs, WithKernel(k)); err != nil || !res.Repaired {
		t.Fatalf("install over a hand-edited table = %+v, %v", res, err)
	}
	k.FlushTable(DefaultTable)
	if removed, err := Remove(context.Background(), DefaultTable, WithKernel(k)); err != nil || !removed {
		t.Fatalf("uninstall of a flushed table = %v, %v", removed, err)
	}
	if len(k.State.Tables)+len(k.State.Chains)+len(k.State.Sets) != 0 {
		t.Fatalf("left after uninstall: %+v", k.State)
	}
}

// Someone else's table named ftpnft that holds an interval set of ports is
// reported as foreign, not as an error, and nothing of it is read further.
func TestForeignTableWithPortSet(t *testing.T) {
	k := &fakekernel.Kernel{}
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := other.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable})
	set := &nftables.Set{Table: tbl, Name: "svc", KeyType: nftables.TypeInetService, Interval: true}
	if err := other.AddSet(set, []nftables.SetElement{{Key: []byte{0, 22}}, {Key: []byte{0, 23}, IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	other.AddChain(&nftables.Chain{Table: tbl, Name: "input"})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	if err != nil || !st.Installed || st.Owned {
		t.Fatalf("status of a foreign table with a port set = %+v, %v; want installed, not owned", st, err)
	}
	if _, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k)); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("install over it: %v, want ErrNotOwned", err)
	}
}

// When the kernel's answers to a batch are lost (ENOBUFS), Apply finds out
// whether the batch was applied instead of reporting "unknown".
func TestAnswersOverflow(t *testing.T) {
	rs := mustBuild(t, DefaultConfig())

	k := &fakekernel.Kernel{Overflow: true}
	res, err := Apply(context.Background(), rs, WithKernel(k))
	if err != nil || !res.Changed || k.Batches != 1 {
		t.Fatalf("applied batch with lost answers = %+v, %v after %d batches; want success", res, err, k.Batches)
	}
	k.Overflow = false
	if st, err := ReadStatus(context.Background(), rs, WithKernel(k)); err != nil || !st.Matches {
		t.Fatalf("status after it = %+v, %v", st, err)
	}

	// The kernel refused the batch: the generation did not move.
	newRule := uint16(unix.NFT_MSG_NEWRULE)
	k = &fakekernel.Kernel{Overflow: true, FailOn: &newRule, FailErr: syscall.EINVAL}
	_, err = Apply(context.Background(), rs, WithKernel(k))
	if err == nil || !strings.Contains(err.Error(), "it was not applied (the ruleset is still at generation 1)") || !errors.Is(err, syscall.ENOBUFS) {
		t.Fatalf("refused batch with lost answers: %v", err)
	}

	// Another writer committed in between, and the batch was refused.
	k = &fakekernel.Kernel{Overflow: true}
	k.BeforeBatch = func() { k.Gen++ }
	_, err = Apply(context.Background(), rs, WithKernel(k))
	if err == nil || !strings.Contains(err.Error(), "another writer committed generation") {
		t.Fatalf("stale batch with lost answers: %v", err)
	}

	// Removing, too.
	k = &fakekernel.Kernel{}
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	k.Overflow = true
	if removed, err := Remove(context.Background(), DefaultTable, WithKernel(k)); err != nil || !removed {
		t.Fatalf("remove with lost answers = %v, %v", removed, err)
	}
}

// More control ports (or services, forwards, interfaces) than the limits
// are refused before anything is built, naming the limit.
func TestConfigLimits(t *testing.T) {
	cfg := DefaultConfig()
	for p := 1; p <= MaxPorts+1; p++ {
		cfg.Ports = append(cfg.Ports[:0:0], cfg.Ports...)
		cfg.Ports = append(cfg.Ports, uint16(1000+p))
	}
	if _, err := Build(cfg); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("control ports: %d given, at most %d", MaxPorts+2, MaxPorts)) {
		t.Fatalf("Build with %d ports: %v", len(cfg.Ports), err)
	}
	cfg.Ports = cfg.Ports[:MaxPorts]
	rs, err := Build(cfg)
	if err != nil {
		t.Fatalf("Build with %d ports: %v", MaxPorts, err)
	}
	k := &fakekernel.Kernel{}
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil || !st.Matches || !reflect.DeepEqual(st.Ports, cfg.Ports) {
		t.Fatalf("status of %d ports: matches %v, %d ports, %v", MaxPorts, st.Matches, len(st.Ports), err)
	}
}

// withDial sends every request to f: for tests that answer with crafted
// messages rather than with the fake kernel.
func withDial(f nltest.Func) Option { return func(o *options) { o.dial = f } }

// Every statement that Build writes is recognised back from its own
// expressions as the same statement: the recognisers and the encoders
// agree, for every role and hardening option.
func TestStatementsRoundTrip(t *testing.T) {
	configs := []Config{DefaultConfig(), routerConfig(), hardenedConfig()}
	all := DefaultConfig()
	all.Roles = []Role{RoleServer, RoleClient, RoleRouter}
	all.DNAT = []DNAT{{2121, netip.MustParseAddrPort("192.0.2.10:21")}, {2121, netip.MustParseAddrPort("[2001:db8::10]:21")}}
	all.Masquerade = []string{"eth0"}
	all.PassivePorts = PortRange{50000, 50100}
	all.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	all.MaxConnPerSource, all.ConnRate = 3, Rate{10, "minute"}
	configs = append(configs, all)
	n := 0
	for _, c := range configs {
		for _, ch := range mustBuild(t, c).Chains {
			for _, r := range ch.Rules {
				got, ok := decodeStmts(r.exprs())
				if !ok || !reflect.DeepEqual(got, r.stmts) {
					t.Errorf("chain %s rule %q: decoded %#v (complete %v), want %#v", ch.Name, r.Comment, got, ok, r.stmts)
				}
				n++
			}
		}
	}
	if n < 40 {
		t.Fatalf("only %d rules checked", n)
	}
	// Expressions that are no statement of ftpnft's are not taken for one.
	if _, ok := decodeStmts([]expr.Any{&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}}); ok {
		t.Error("meta mark decoded as a statement of ftpnft's")
	}
}

// Dump shows what the kernel holds in nft syntax, also rules that are not
// ftpnft's: a foreign comment as it is, unknown statements as a comment.
func TestDumpShowsHandEdits(t *testing.T) {
	k := &fakekernel.Kernel{}
	rs := mustBuild(t, DefaultConfig())
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable}
	input := &nftables.Chain{Name: "input", Table: tbl}
	other.AddRule(&nftables.Rule{Table: tbl, Chain: input, Exprs: append(dport{"tcp", 22}.exprs(), accept.exprs()...),
		UserData: userdata.AppendString(nil, userdata.TypeComment, "ssh")})
	other.AddRule(&nftables.Rule{Table: tbl, Chain: input, Exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1}, &expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{1, 0, 0, 0}}}})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := Dump(context.Background(), DefaultTable, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"\t\ttcp dport 22 accept comment \"ssh\"\n", "\t\t# handle [1-9][0-9]*: statements that ftpnft does not know\n", `comment "ftpnft: established"`} {
		if !regexp.MustCompile(want).MatchString(got) {
			t.Errorf("dump lacks %q:\n%s", want, got)
		}
	}
	if _, err := Dump(context.Background(), "nosuch", WithKernel(k)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("dump of a missing table: %v", err)
	}
}

// The configuration read back from a table equals the one it was built
// from, key by key; a different one differs in exactly its keys.
func TestStatusConfigRoundTrip(t *testing.T) {
	cfg := hardenedConfig()
	cfg.Allow = []Service{{"tcp", 22}, {"udp", 53}}
	cfg.Sources = append(cfg.Sources, netip.MustParsePrefix("198.51.100.0/25"), netip.MustParsePrefix("198.51.100.128/25"))
	rs := mustBuild(t, cfg)
	k := &fakekernel.Kernel{}
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if d := Compare(st.Config(), cfg); len(d) != 0 {
		t.Fatalf("installed and wanted differ: %v", d)
	}
	want := cfg
	want.Policy = PolicyAccept
	want.Ports = []uint16{21}
	d := Compare(st.Config(), want)
	if len(d) != 2 || d[0].String() != "ports: installed 21,2121, wanted 21" || d[1].String() != "policy: installed drop, wanted accept" {
		t.Fatalf("differences: %v", d)
	}
	// The prefixes of a merged range cover it exactly.
	r := AddrRange{netip.MustParseAddr("192.0.2.3"), netip.MustParseAddr("192.0.2.10")}
	if got := fmt.Sprint(r.prefixes()); got != "[192.0.2.3/32 192.0.2.4/30 192.0.2.8/31 192.0.2.10/32]" {
		t.Fatalf("prefixes of %v: %s", r, got)
	}
}

// A blocklist comes first in every policy chain, for every role; its file
// loads in FireHOL's and Spamhaus' formats; the lockout guard knows it; and
// status reads it back.
func TestBlocklist(t *testing.T) {
	file := filepath.Join(t.TempDir(), "drop.txt")
	if err := os.WriteFile(file, []byte("; Spamhaus DROP List\n192.0.2.0/25 ; SBL1\n# FireHOL level1\n2001:db8:bad::/48\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	block, err := ReadSourceFile(file)
	if err != nil || len(block) != 2 {
		t.Fatalf("ReadSourceFile = %v, %v", block, err)
	}
	cfg := DefaultConfig()
	cfg.Roles = []Role{RoleServer, RoleRouter}
	cfg.Block = block
	rs := mustBuild(t, cfg)
	for _, ch := range rs.Chains {
		if ch.Hook != "input" && ch.Hook != "forward" {
			continue
		}
		rules := ch.Rules
		if ch.Hook == "input" {
			if rules[0].Comment != "loopback" {
				t.Errorf("input does not begin with loopback (FireHOL's lists hold 127.0.0.0/8): %q", rules[0].Comment)
			}
			rules = rules[1:]
		}
		// Bans first, then the blocklist.
		if len(rules) < 4 || rules[0].Comment != "banned source ipv4" || rules[1].Comment != "banned source ipv6" ||
			rules[2].Comment != "blocked source ipv4" || rules[3].Comment != "blocked source ipv6" {
			t.Errorf("chain %s does not begin with the bans and the blocklist: %+v", ch.Name, rules[:min(4, len(rules))])
		}
	}
	if cfg.AdmitsNew(netip.MustParseAddr("192.0.2.9"), 21) || !cfg.AdmitsNew(netip.MustParseAddr("192.0.2.200"), 21) {
		t.Error("AdmitsNew does not follow the blocklist")
	}
	k := &fakekernel.Kernel{}
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil || !st.Matches || len(st.Blocked) != 2 || len(Compare(st.Config(), cfg)) != 0 {
		t.Fatalf("status: matches %v, blocked %v, differences %v, %v", st.Matches, st.Blocked, Compare(st.Config(), cfg), err)
	}
	// Lists that differ after their fourth range differ.
	long := func(last string) []netip.Prefix {
		var ps []netip.Prefix
		for i := range 9 {
			ps = append(ps, netip.MustParsePrefix(fmt.Sprintf("10.%d.0.0/16", 2*i)))
		}
		return append(ps, netip.MustParsePrefix(last))
	}
	if d := Compare(Config{Block: long("10.100.0.0/16")}, Config{Block: long("10.102.0.0/16")}); len(d) != 1 || d[0].Key != "block" {
		t.Errorf("blocklists differing in their tenth range: %v", d)
	}
	cfg.Block = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")}
	if _, err := Build(cfg); err == nil || !strings.Contains(err.Error(), "block: source 192.0.2.1/24: host bits set") {
		t.Errorf("a blocked network with host bits: %v", err)
	}
}

// A status compared with the ruleset the table's stamp proves it holds
// reads no set element; WithVerify, or any commit since, makes it read all.
func TestStatusOfStampedTableReadsNoElements(t *testing.T) {
	k := &fakekernel.Kernel{}
	cfg := DefaultConfig()
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	rs := mustBuild(t, cfg)
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	read := func(opts ...Option) (*Status, int) {
		t.Helper()
		k.Gets = nil
		st, err := ReadStatus(context.Background(), rs, append(opts, WithKernel(k))...)
		if err != nil {
			t.Fatal(err)
		}
		return st, k.Gets[unix.NFT_MSG_GETSETELEM]
	}
	// The two ban sets are always read: bans are not in the stamp.
	st, dumps := read()
	if dumps != 2 || !st.Matches || st.Modified || len(st.Sources) != 2 {
		t.Fatalf("stamped: %d element dumps (want the 2 ban sets), matches %v, modified %v, sources %v", dumps, st.Matches, st.Modified, st.Sources)
	}
	if st, dumps := read(WithVerify()); dumps != 4 || !st.Matches {
		t.Fatalf("with WithVerify: %d element dumps, matches %v", dumps, st.Matches)
	}
	k.Gen++ // someone else committed
	if st, dumps := read(); dumps == 0 || !st.Matches {
		t.Fatalf("after another commit: %d element dumps, matches %v", dumps, st.Matches)
	}
	// A different configuration is never taken for the stamped one.
	other := cfg
	other.Sources = cfg.Sources[:1]
	st, err := ReadStatus(context.Background(), mustBuild(t, other), WithKernel(k))
	if err != nil || st.Matches || len(st.Sources) != 2 {
		t.Fatalf("another configuration: matches %v, sources %v, %v", st.Matches, st.Sources, err)
	}
}

// Uninstall reads no set element: it needs only to know that the table is
// ftpnft's (a million-network set took the kernel a minute to list).
func TestRemoveReadsNoElements(t *testing.T) {
	k := &fakekernel.Kernel{}
	cfg := DefaultConfig()
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	if _, err := Apply(context.Background(), mustBuild(t, cfg), WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	k.Gets = nil
	if removed, err := Remove(context.Background(), DefaultTable, WithKernel(k)); err != nil || !removed {
		t.Fatalf("Remove = %v, %v", removed, err)
	}
	if n := k.Gets[unix.NFT_MSG_GETSETELEM]; n != 0 {
		t.Fatalf("Remove made %d element dumps", n)
	}
}
