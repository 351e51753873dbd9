package nft

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

func mustBuild(t *testing.T, c Config) *Ruleset {
	t.Helper()
	rs, err := Build(c)
	if err != nil {
		t.Fatalf("Build(%+v): %v", c, err)
	}
	return rs
}

func TestRenderGolden(t *testing.T) {
	custom := DefaultConfig()
	custom.Table = "ftp-edge"
	custom.Ports = []uint16{21, 2121}
	custom.Policy = PolicyAccept
	custom.Allow = []Service{{"tcp", 22}, {"udp", 53}}
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "custom": custom} {
		t.Run(name, func(t *testing.T) {
			got := mustBuild(t, cfg).Render()
			path := filepath.Join("testdata", name+".nft")
			if *update {
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./nft -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("Render() differs from %s:\n--- got\n%s\n--- want\n%s", path, got, want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	mod := func(f func(*Config)) Config { c := DefaultConfig(); f(&c); return c }
	tests := []struct {
		name    string
		cfg     Config
		wantErr string
	}{
		{"default", DefaultConfig(), ""},
		{"injection in table", mod(func(c *Config) { c.Table = "x; flush ruleset" }), `table "x; flush ruleset"`},
		{"empty table", mod(func(c *Config) { c.Table = "" }), `table ""`},
		{"table starts with digit", mod(func(c *Config) { c.Table = "1ftp" }), `table "1ftp"`},
		{"keyword as table", mod(func(c *Config) { c.Table = "counter" }), `table "counter": an nft keyword`},
		{"no ports", mod(func(c *Config) { c.Ports = nil }), "at least one FTP control port"},
		{"port 0", mod(func(c *Config) { c.Ports = []uint16{0} }), "port 0"},
		{"duplicate port", mod(func(c *Config) { c.Ports = []uint16{21, 21} }), "port 21 listed twice"},
		{"bad policy", mod(func(c *Config) { c.Policy = "reject" }), `policy "reject"`},
		{"bad service proto", mod(func(c *Config) { c.Allow = []Service{{"sctp", 22}} }), `protocol "sctp"`},
		{"duplicate service", mod(func(c *Config) { c.Allow = []Service{{"tcp", 22}, {"tcp", 22}} }), "tcp/22 allowed twice"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.wantErr == "" {
			if err != nil {
				t.Errorf("%s: Validate() = %v, want nil", tt.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%s: Validate() = %v, want error containing %q", tt.name, err, tt.wantErr)
		}
		if _, err := Build(tt.cfg); err == nil {
			t.Errorf("%s: Build accepted an invalid config", tt.name)
		}
	}
}

func TestParseService(t *testing.T) {
	for in, want := range map[string]string{
		"tcp/22": "", "udp/53": "", "tcp": "want PROTO/PORT", "icmp/1": `protocol "icmp"`,
		"tcp/0": "out of range", "tcp/ssh": "not a number", "tcp/": "empty",
	} {
		_, err := ParseService(in)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseService(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	k := &fakeKernel{}
	rs := mustBuild(t, DefaultConfig())

	res, err := Apply(rs, WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || res.Replaced {
		t.Fatalf("first Apply = %+v, want changed, not replaced", res)
	}
	// table + helper + 2 chains + rules
	wantMsgs := 1 + 1 + 2 + len(rs.Chains[0].Rules) + len(rs.Chains[1].Rules)
	if k.writes != wantMsgs || k.batches != 1 {
		t.Fatalf("first Apply sent %d messages in %d batches, want %d in 1", k.writes, k.batches, wantMsgs)
	}

	res, err = Apply(rs, WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed {
		t.Fatalf("second Apply = %+v, want unchanged", res)
	}
	if k.writes != wantMsgs || k.batches != 1 {
		t.Fatalf("second Apply wrote: %d messages, %d batches", k.writes, k.batches)
	}

	// A new configuration replaces the table in one batch.
	cfg := DefaultConfig()
	cfg.Ports = []uint16{21, 2121}
	res, err = Apply(mustBuild(t, cfg), WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || !res.Replaced || k.batches != 2 {
		t.Fatalf("Apply with new ports = %+v after %d batches, want replaced in batch 2", res, k.batches)
	}
	st, err := ReadStatus(mustBuild(t, cfg), WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Installed || !st.Owned || !st.Matches || !reflect.DeepEqual(st.Ports, []uint16{21, 2121}) || st.Policy != PolicyDrop {
		t.Fatalf("status after replace = %+v", st)
	}
	// The old configuration no longer matches.
	st, err = ReadStatus(rs, WithTestDial(k.dial))
	if err != nil || st.Matches {
		t.Fatalf("status against old config = %+v, %v; want not matching", st, err)
	}
}

func TestApplyFailureChangesNothing(t *testing.T) {
	k := &fakeKernel{}
	if _, err := Apply(mustBuild(t, DefaultConfig()), WithTestDial(k.dial)); err != nil {
		t.Fatal(err)
	}
	before := k.state.clone()

	cfg := DefaultConfig()
	cfg.Allow = []Service{{"tcp", 22}}
	k.failOn, k.failErr = unix.NFT_MSG_NEWRULE, syscall.EINVAL
	_, err := Apply(mustBuild(t, cfg), WithTestDial(k.dial))
	if err == nil {
		t.Fatal("Apply succeeded against a kernel that rejects rules")
	}
	var e *Error
	if !errors.As(err, &e) || e.Op != "install" || e.Table != "ftpnft" {
		t.Fatalf("error %v, want *Error naming install of table ftpnft", err)
	}
	if !reflect.DeepEqual(k.state, before) {
		t.Fatal("a failed batch changed the kernel's state")
	}
}

func TestApplyPermission(t *testing.T) {
	k := &fakeKernel{failOn: unix.NFT_MSG_NEWCHAIN, failErr: syscall.EPERM}
	_, err := Apply(mustBuild(t, DefaultConfig()), WithTestDial(k.dial))
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Apply error = %v, want errors.Is os.ErrPermission", err)
	}
	if Hint(err) == "" {
		t.Fatal("no hint for a permission error")
	}
}

func TestForeignTableUntouched(t *testing.T) {
	k := &fakeKernel{}
	// Someone else's table named "ftpnft": a chain and a rule without ftpnft's comment.
	other, err := nftables.New(nftables.WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := other.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "ftpnft"})
	ch := other.AddChain(&nftables.Chain{Table: tbl, Name: "mine"})
	other.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: accept.exprs()})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	before, writes := k.state.clone(), k.writes

	_, err = Apply(mustBuild(t, DefaultConfig()), WithTestDial(k.dial))
	if !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Apply over a foreign table: %v, want ErrNotOwned", err)
	}
	removed, err := Remove("ftpnft", WithTestDial(k.dial))
	if removed || !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Remove of a foreign table = %v, %v; want ErrNotOwned", removed, err)
	}
	if k.writes != writes || !reflect.DeepEqual(k.state, before) {
		t.Fatal("ftpnft wrote to a table it did not create")
	}
}

func TestRemove(t *testing.T) {
	k := &fakeKernel{}
	removed, err := Remove("ftpnft", WithTestDial(k.dial))
	if err != nil || removed {
		t.Fatalf("Remove on empty kernel = %v, %v; want false, nil", removed, err)
	}
	if _, err := Apply(mustBuild(t, DefaultConfig()), WithTestDial(k.dial)); err != nil {
		t.Fatal(err)
	}
	removed, err = Remove("ftpnft", WithTestDial(k.dial))
	if err != nil || !removed {
		t.Fatalf("Remove = %v, %v; want true, nil", removed, err)
	}
	if len(k.state.tables)+len(k.state.chains)+len(k.state.rules)+len(k.state.objs) != 0 {
		t.Fatalf("state after Remove: %+v", k.state)
	}
}

func TestStatusNotInstalled(t *testing.T) {
	k := &fakeKernel{}
	st, err := ReadStatus(mustBuild(t, DefaultConfig()), WithTestDial(k.dial))
	if err != nil {
		t.Fatal(err)
	}
	if st.Installed || st.Owned || st.Matches {
		t.Fatalf("status on empty kernel = %+v", st)
	}
}

func TestMissingNetNS(t *testing.T) {
	_, err := Apply(mustBuild(t, DefaultConfig()), WithNetNS(filepath.Join(t.TempDir(), "nope")))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Apply in a missing namespace: %v, want os.ErrNotExist", err)
	}
}

func TestWithoutHelper(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Ports = []uint16{21, 2121}
	rs := mustBuild(t, cfg)
	bare := rs.WithoutHelper().Render()
	if strings.Contains(bare, "ct helper set") || strings.Contains(bare, `type "ftp"`) {
		t.Fatalf("helper still present:\n%s", bare)
	}
	if !strings.Contains(bare, "policy drop") || !strings.Contains(bare, `ct state related ct helper "ftp"`) ||
		!strings.Contains(bare, "tcp dport 2121 ct state new counter accept") {
		t.Fatalf("policy not kept:\n%s", bare)
	}
	if !strings.Contains(rs.Render(), "ct helper set") {
		t.Fatal("WithoutHelper modified its receiver")
	}
}
