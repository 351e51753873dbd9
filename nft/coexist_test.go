package nft

import (
	"context"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

// foreignChain adds a base chain of another manager to k, with rules.
func foreignChain(t *testing.T, k *fakekernel.Kernel, fam nftables.TableFamily, table, chain, hook string, policy nftables.ChainPolicy, rules ...[]expr.Any) {
	t.Helper()
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: fam, Name: table})
	ch := c.AddChain(&nftables.Chain{Table: tbl, Name: chain, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookRef(hookNumbers[hook]), Priority: nftables.ChainPriorityRef(10), Policy: &policy})
	for _, r := range rules {
		c.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: r})
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
}

func joined(stmts ...stmt) []expr.Any {
	var out []expr.Any
	for _, s := range stmts {
		out = append(out, s.exprs()...)
	}
	return out
}

func findingsText(fs []Finding) string {
	var b strings.Builder
	for _, f := range fs {
		b.WriteString(f.String() + "\n")
	}
	return b.String()
}

// A classic iptables-nft INPUT chain: policy drop, established and SSH
// accepted, nothing for FTP. Coexistence names what it drops, certainly,
// and what ftpnft's own policy would drop that it admits.
func TestCoexistenceIptablesScript(t *testing.T) {
	k := &fakekernel.Kernel{}
	foreignChain(t, k, nftables.TableFamilyIPv4, "filter", "INPUT", "input", nftables.ChainPolicyDrop,
		joined(ctState{stateEstablished}, counter{}, accept),
		joined(iifname{"lo"}, accept),
		joined(dport{"tcp", 22}, counter{}, accept))
	fs, err := Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsText(fs)
	for _, want := range []string{
		"ip filter INPUT (hook input priority 10, iptables-nft) drops new control connections to port 21: policy drop; fix: iptables -I INPUT -p tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT",
		"ip filter INPUT (hook input priority 10, iptables-nft) drops RELATED data connections (expected by the ftp helper): policy drop; fix: iptables -I INPUT -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT",
		"admits new connections to tcp/22, which ftpnft's input chain (policy drop) drops; fix: add --allow tcp/22",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("findings lack %q:\n%s", want, got)
		}
	}
	if len(fs) != 3 {
		t.Errorf("%d findings, want 3:\n%s", len(fs), got)
	}
	// With --allow tcp/22 and --policy accept, nothing of ftpnft's is to
	// blame; the other chain's drops remain.
	cfg := DefaultConfig()
	cfg.Allow = []Service{{"tcp", 22}}
	fs, _ = Coexistence(context.Background(), cfg, WithKernel(k))
	if len(fs) != 2 {
		t.Errorf("with --allow tcp/22: %s", findingsText(fs))
	}
}

// A firewalld-like chain that accepts established and related (one mask of
// two bits) and FTP's port: nothing to report. Without the port, the drop
// names firewalld and its fix.
func TestCoexistenceFirewalldLike(t *testing.T) {
	k := &fakekernel.Kernel{}
	related := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, stateEstablished|stateRelated), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}
	foreignChain(t, k, nftables.TableFamilyINet, "firewalld", "filter_INPUT", "input", nftables.ChainPolicyAccept,
		related,
		joined(dport{"tcp", 21}, ctState{stateNew}, accept),
		[]expr.Any{&expr.Reject{Type: unix.NFT_REJECT_ICMPX_UNREACH, Code: unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED}})
	fs, err := Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if err != nil || len(fs) != 0 {
		t.Fatalf("FTP open in firewalld: %v\n%s", err, findingsText(fs))
	}
	cfg := DefaultConfig()
	cfg.Ports = []uint16{2121}
	fs, err = Coexistence(context.Background(), cfg, WithKernel(k))
	if err != nil || len(fs) != 2 || !fs[1].DroppedByFtpnft || fs[0].Manager != "firewalld" || !fs[0].Certain || !strings.Contains(fs[0].Fix, "firewall-cmd --add-port=2121/tcp") {
		t.Fatalf("port 2121 closed in firewalld: %v\n%s", err, findingsText(fs))
	}
	// An address match before the reject: only a suspicion.
	k = &fakekernel.Kernel{}
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "other"})
	if err := c.AddSet(&nftables.Set{Table: tbl, Name: "blocked", KeyType: nftables.TypeIPAddr, Interval: true}, nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	foreignChain(t, k, nftables.TableFamilyINet, "other", "in", "input", nftables.ChainPolicyAccept,
		joined(saddrIn{set: "blocked", v6: false}, drop))
	fs, _ = Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if len(fs) == 0 || fs[0].Certain {
		t.Fatalf("a set lookup before a drop: %s", findingsText(fs))
	}
}

// Jumps are followed, and a router is read at forward.
func TestCoexistenceJumpsAndRoles(t *testing.T) {
	k := &fakekernel.Kernel{}
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := c.AddTable(&nftables.Table{Family: nftables.TableFamilyIPv4, Name: "filter"})
	drop := nftables.ChainPolicyDrop
	fwd := c.AddChain(&nftables.Chain{Table: tbl, Name: "FORWARD", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityFilter, Policy: &drop})
	user := c.AddChain(&nftables.Chain{Table: tbl, Name: "DOCKER-USER"})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: fwd, Exprs: joined(jump{"DOCKER-USER"})})
	c.AddRule(&nftables.Rule{Table: tbl, Chain: user, Exprs: joined(ctState{stateRelated}, accept)})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Roles = []Role{RoleRouter}
	fs, err := Coexistence(context.Background(), cfg, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	got := findingsText(fs)
	if len(fs) != 1 || !strings.Contains(got, "FORWARD (hook forward priority 0, docker) drops new control connections to port 21") {
		t.Fatalf("router behind Docker's FORWARD:\n%s", got)
	}
	// A server is not concerned with forward.
	if fs, _ := Coexistence(context.Background(), DefaultConfig(), WithKernel(k)); len(fs) != 0 {
		t.Fatalf("server: %s", findingsText(fs))
	}
}

// Set membership, exact and by intervals, at the ends of the key space.
func TestMember(t *testing.T) {
	exact := &setContent{elements: []nftables.SetElement{{Key: []byte{0xff, 0xff}}, {Key: []byte{0, 21}}}}
	if member(reg{data: []byte{0xff, 0xff}}, exact) != yes || member(reg{data: []byte{0, 22}}, exact) != no {
		t.Error("exact set: 65535 or 22 misjudged")
	}
	all := &setContent{interval: true, elements: []nftables.SetElement{{Key: make([]byte, 4)}}} // 0.0.0.0/0
	if member(reg{data: []byte{192, 0, 2, 1}}, all) != yes {
		t.Error("0.0.0.0/0 does not hold 192.0.2.1")
	}
	// 10.0.0.0/24 and the adjacent 10.0.1.0/24: the end of one at the start of the other.
	adjacent := &setContent{interval: true, elements: []nftables.SetElement{
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true}, {Key: []byte{10, 0, 0, 0}},
		{Key: []byte{10, 0, 1, 0}, IntervalEnd: true}, {Key: []byte{10, 0, 1, 0}}, {Key: []byte{10, 0, 2, 0}, IntervalEnd: true},
	}}
	for addr, want := range map[[4]byte]tri{{10, 0, 0, 5}: yes, {10, 0, 1, 5}: yes, {10, 0, 2, 0}: no, {9, 255, 255, 255}: no} {
		if got := member(reg{data: addr[:]}, adjacent); got != want {
			t.Errorf("%v in adjacent ranges: %v, want %v", addr, got, want)
		}
	}
	ports := &setContent{interval: true, elements: []nftables.SetElement{{Key: []byte{0, 0}, IntervalEnd: true}, {Key: []byte{0x04, 0x00}}}} // 1024-65535
	if member(reg{ports: PortRange{1024, 65535}}, ports) != yes || member(reg{ports: PortRange{1, 1023}}, ports) != no {
		t.Error("a port range against 1024-65535 misjudged")
	}
}

// A return in a base chain, and the end of a chain gone to by goto, apply
// the base chain's policy.
func TestBaseChainReturnAppliesPolicy(t *testing.T) {
	k := &fakekernel.Kernel{}
	foreignChain(t, k, nftables.TableFamilyIPv4, "filter", "INPUT", "input", nftables.ChainPolicyDrop,
		[]expr.Any{&expr.Verdict{Kind: expr.VerdictReturn}})
	fs, err := Coexistence(context.Background(), DefaultConfig(), WithKernel(k))
	if err != nil || len(fs) == 0 || !fs[0].Certain || fs[0].Where != "policy drop" {
		t.Fatalf("return in a base chain with policy drop: %v\n%s", err, findingsText(fs))
	}
}

// A set is read only for a lookup that it can decide: a probe's source
// address is unknown, so a blocklist's elements are never read (a million
// of them would be, for maybe); its destination port is known, so a port
// set's are.
func TestLookupReadsSetOnlyWhenItDecides(t *testing.T) {
	p := probe{proto: unix.IPPROTO_TCP, dport: 21, state: stateNew}
	lookup := func(load *expr.Payload) []expr.Any {
		load.DestRegister = 1
		return []expr.Any{load, &expr.Lookup{SourceRegister: 1, SetName: "s"}, &expr.Verdict{Kind: expr.VerdictDrop}}
	}
	for _, tt := range []struct {
		name  string
		load  *expr.Payload
		reads int
		want  tri
	}{
		{"ip saddr", &expr.Payload{Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4}, 0, maybe},
		{"tcp dport", &expr.Payload{Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2}, 1, yes},
	} {
		reads := 0
		m, _ := matchRule(lookup(tt.load), p, func(string) *setContent {
			reads++
			return &setContent{elements: []nftables.SetElement{{Key: []byte{0, 21}}}}
		})
		if reads != tt.reads || m != tt.want {
			t.Errorf("%s @s: set read %d times, match %v; want %d, %v", tt.name, reads, m, tt.reads, tt.want)
		}
	}
}
