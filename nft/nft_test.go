package nft

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/mdlayher/netlink/nltest"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
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
	client := DefaultConfig()
	client.Roles = []Role{RoleClient}
	client.Ports = []uint16{21, 2121}
	router := routerConfig()
	for name, cfg := range map[string]Config{"default": DefaultConfig(), "custom": custom, "client": client, "router": router, "hardened": hardenedConfig()} {
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

// routerConfig is a port-forwarding router with masquerade, IPv4 and IPv6.
func routerConfig() Config {
	c := DefaultConfig()
	c.Roles = []Role{RoleRouter}
	c.DNAT = []DNAT{
		{21, netip.MustParseAddrPort("192.0.2.10:21")},
		{2121, netip.MustParseAddrPort("192.0.2.11:2121")},
		{21, netip.MustParseAddrPort("[2001:db8:2::10]:21")},
	}
	c.Masquerade = []string{"eth0"}
	c.Allow = []Service{{"tcp", 443}}
	return c
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
		{"table starts with dot", mod(func(c *Config) { c.Table = ".ftp" }), `table ".ftp"`},
		{"table with non-ASCII letter", mod(func(c *Config) { c.Table = "ftpé" }), `table "ftpé"`},
		{"table of 255 characters", mod(func(c *Config) { c.Table = "f" + strings.Repeat("t.-_9", 50) + "pftp" }), ""},
		{"table of 256 characters", mod(func(c *Config) { c.Table = "f" + strings.Repeat("t.-_9", 51) }), `table "ft.-_9`},
		{"table of letters, digits, '_', '-' and '.'", mod(func(c *Config) { c.Table = "FTP_nft-2.0" }), ""},
		{"keyword as table", mod(func(c *Config) { c.Table = "counter" }), `table "counter": an nft keyword`},
		{"no ports", mod(func(c *Config) { c.Ports = nil }), "at least one FTP control port"},
		{"port 0", mod(func(c *Config) { c.Ports = []uint16{0} }), "port 0"},
		{"duplicate port", mod(func(c *Config) { c.Ports = []uint16{21, 21} }), "port 21 listed twice"},
		{"bad policy", mod(func(c *Config) { c.Policy = "reject" }), `policy "reject"`},
		{"bad service proto", mod(func(c *Config) { c.Allow = []Service{{"sctp", 22}} }), `protocol "sctp"`},
		{"duplicate service", mod(func(c *Config) { c.Allow = []Service{{"tcp", 22}, {"tcp", 22}} }), "tcp/22 allowed twice"},
		{"router", routerConfig(), ""},
		{"no roles", mod(func(c *Config) { c.Roles = nil }), "at least one of server, client, router"},
		{"bad role", mod(func(c *Config) { c.Roles = []Role{"gateway"} }), `role "gateway"`},
		{"duplicate role", mod(func(c *Config) { c.Roles = []Role{RoleClient, RoleClient} }), `role "client" listed twice`},
		{"dnat without router", mod(func(c *Config) { c.DNAT = routerConfig().DNAT }), "dnat 21=192.0.2.10:21: forwarding needs role router"},
		{"masquerade without router", mod(func(c *Config) { c.Masquerade = []string{"eth0"} }), "masquerade eth0: source NAT needs role router"},
		{"dnat listen twice", func() Config {
			c := routerConfig()
			c.DNAT = append(c.DNAT, DNAT{21, netip.MustParseAddrPort("192.0.2.12:21")})
			return c
		}(), "dnat 21=192.0.2.12:21: listen port 21 is already forwarded by dnat 21=192.0.2.10:21"},
		{"dnat to loopback", func() Config {
			c := routerConfig()
			c.DNAT = []DNAT{{21, netip.MustParseAddrPort("127.0.0.1:21")}}
			return c
		}(), "target address 127.0.0.1: want a routable unicast address"},
		{"dnat zero port", func() Config {
			c := routerConfig()
			c.DNAT = []DNAT{{21, netip.MustParseAddrPort("192.0.2.10:0")}}
			return c
		}(), "target port 0"},
		{"bad interface", func() Config { c := routerConfig(); c.Masquerade = []string{`eth0" accept`}; return c }(), `interface "eth0\" accept"`},
		{"dnat to zoned address", func() Config {
			c := routerConfig()
			c.DNAT = []DNAT{{21, netip.MustParseAddrPort("[2001:db8::10%eth0]:21")}}
			return c
		}(), "a zone (%eth0) cannot be matched"},
		{"dnat to mapped address", func() Config {
			c := routerConfig()
			c.DNAT = []DNAT{{21, netip.MustParseAddrPort("[::ffff:192.0.2.10]:21")}}
			return c
		}(), "is IPv4-mapped: write it as 192.0.2.10"},
		{"dnat over own server", func() Config {
			c := routerConfig()
			c.Roles = []Role{RoleServer, RoleRouter}
			return c
		}(), "listen port 21 is also a control port of this host's FTP server"},
		{"hardened", hardenedConfig(), ""},
		{"related range reversed", mod(func(c *Config) { c.RelatedPorts = PortRange{2000, 1024} }), "related ports 2000-1024"},
		{"no related range", mod(func(c *Config) { c.RelatedPorts = PortRange{} }), "related ports 0-0"},
		{"privileged passive range", mod(func(c *Config) { c.PassivePorts = PortRange{100, 2000} }), "passive ports 100-2000: must be unprivileged"},
		{"passive without server", mod(func(c *Config) { c.Roles = []Role{RoleClient}; c.PassivePorts = PortRange{50000, 50010} }), "add role server"},
		{"limits on a client", mod(func(c *Config) { c.Roles = []Role{RoleClient}; c.MaxConnPerSource = 3 }), "add role server or router"},
		{"bad rate", mod(func(c *Config) { c.ConnRate = Rate{5, "hour"} }), `rate 5/hour: unit "hour"`},
		{"source with host bits", mod(func(c *Config) { c.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.1/24")} }), "did you mean 192.0.2.0/24"},
		{"duplicate interface", func() Config { c := routerConfig(); c.Masquerade = []string{"eth0", "eth0"}; return c }(), "masquerade eth0 listed twice"},
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

func TestDNATTargetsOnce(t *testing.T) {
	c := routerConfig()
	c.DNAT = []DNAT{{21, netip.MustParseAddrPort("192.0.2.10:21")}, {2121, netip.MustParseAddrPort("192.0.2.10:21")}}
	text := mustBuild(t, c).Render()
	if n := strings.Count(text, "ip daddr 192.0.2.10 tcp dport 21 ct state new ct helper set"); n != 1 {
		t.Errorf("helper assigned %d times to one target, want 1:\n%s", n, text)
	}
	if n := strings.Count(text, "dnat ip to 192.0.2.10:21"); n != 2 {
		t.Errorf("%d DNAT rules for two listen ports, want 2:\n%s", n, text)
	}
}

func TestParseRoles(t *testing.T) {
	for in, want := range map[string]string{
		"server": "", "client,router": "", "server, client": "", "": `role ""`,
		"server,server": `role "server" listed twice`, "nat": `role "nat"`, "server,": `role ""`,
	} {
		_, err := ParseRoles(in)
		if (err == nil) != (want == "") || (err != nil && !strings.Contains(err.Error(), want)) {
			t.Errorf("ParseRoles(%q) = %v, want %q", in, err, want)
		}
	}
}

func TestParseDNAT(t *testing.T) {
	for in, want := range map[string]string{
		"21=192.0.2.10:21":          "21=192.0.2.10:21",
		"2121=[2001:db8::10]:21":    "2121=[2001:db8::10]:21",
		"65535=[2001:db8::a]:1":     "65535=[2001:db8::a]:1",
		"21=[::ffff:192.0.2.10]:21": "is IPv4-mapped: write it as 192.0.2.10",
		"21":                        "want LISTENPORT=ADDR:PORT",
		"21=192.0.2.10":             "the port is required",
		"21=2001:db8::10:21":        "an IPv6 target needs brackets",
		"21=[2001:db8::10]21":       "want [ADDR]:PORT",
		"0=192.0.2.10:21":           `listen port "0": out of range`,
		"x=192.0.2.10:21":           `listen port "x"`,
		"21=192.0.2.10:70000":       `target port "70000": out of range`,
		"21=ftp.example:21":         `target address "ftp.example"`,
		"21=[fe80::1%eth0]:21":      "a zone (%eth0) cannot be matched",
		"21=[2001:db8::1%1]:21":     "a zone (%1) cannot be matched",
		"21=0.0.0.0:21":             "want a routable unicast address",
		"21=224.0.0.1:21":           "want a routable unicast address",
		"21=[::1]:21":               "want a routable unicast address",
	} {
		d, err := ParseDNAT(in)
		switch {
		case want == in:
			if err != nil || d.String() != in {
				t.Errorf("ParseDNAT(%q) = %v, %v; want it back unchanged", in, d, err)
			}
		case err == nil:
			t.Errorf("ParseDNAT(%q) = %v, want error %q", in, d, want)
		case !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), in):
			t.Errorf("ParseDNAT(%q) error %q, want it to contain %q and name the value", in, err, want)
		}
	}
}

func TestParseInterface(t *testing.T) {
	for in, ok := range map[string]bool{
		"eth0": true, "wan.100": true, "br-lan": true, "veth@1": true, "": false, "eth0 ": false,
		"a/b": false, "..": false, "averyveryverylongname": false, `x"y`: false,
	} {
		if _, err := ParseInterface(in); (err == nil) != ok {
			t.Errorf("ParseInterface(%q) = %v, want ok=%v", in, err, ok)
		}
	}
}

func TestStatusOfRoles(t *testing.T) {
	cfg := routerConfig()
	cfg.Roles = []Role{RoleServer, RoleClient, RoleRouter}
	cfg.Ports = []uint16{990, 8021}
	k := &fakekernel.Kernel{}
	rs := mustBuild(t, cfg)
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Matches || !reflect.DeepEqual(st.Roles, cfg.Roles) || !reflect.DeepEqual(st.Ports, cfg.Ports) ||
		!reflect.DeepEqual(st.DNAT, cfg.DNAT) || !reflect.DeepEqual(st.Masquerade, cfg.Masquerade) {
		t.Fatalf("status = %+v\nwant roles %v ports %v dnat %v masquerade %v", st, cfg.Roles, cfg.Ports, cfg.DNAT, cfg.Masquerade)
	}
	for _, roles := range [][]Role{{RoleServer}, {RoleClient}, {RoleRouter}, {RoleClient, RoleRouter}} {
		c := DefaultConfig()
		c.Roles = roles
		c.Allow = []Service{{"tcp", 22}} // an allowed service does not make a server
		rs := mustBuild(t, c)
		if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
			t.Fatal(err)
		}
		st, err := ReadStatus(context.Background(), rs, WithKernel(k))
		if err != nil || !reflect.DeepEqual(st.Roles, roles) || !st.Matches {
			t.Errorf("roles %v: status roles %v matches %v, %v", roles, st.Roles, st.Matches, err)
		}
	}
}

func TestApplyIsIdempotent(t *testing.T) {
	k := &fakekernel.Kernel{}
	rs := mustBuild(t, DefaultConfig())

	res, err := Apply(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed {
		t.Fatalf("first Apply = %+v, want changed, not replaced", res)
	}
	// table + helper + 2 ban sets + 2 chains + rules + the stamp chain and its rule
	wantMsgs := 1 + 1 + 2 + 2 + len(rs.Chains[0].Rules) + len(rs.Chains[1].Rules) + 2
	if k.Writes != wantMsgs || k.Batches != 1 {
		t.Fatalf("first Apply sent %d messages in %d batches, want %d in 1", k.Writes, k.Batches, wantMsgs)
	}

	res, err = Apply(context.Background(), rs, WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if res.Changed {
		t.Fatalf("second Apply = %+v, want unchanged", res)
	}
	if k.Writes != wantMsgs || k.Batches != 1 {
		t.Fatalf("second Apply wrote: %d messages, %d batches", k.Writes, k.Batches)
	}

	// A new configuration changes the table in one batch: two rules, and
	// the stamp.
	cfg := DefaultConfig()
	cfg.Ports = []uint16{21, 2121}
	writes := k.Writes
	res, err = Apply(context.Background(), mustBuild(t, cfg), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if !res.Changed || k.Batches != 2 || res.Plan.Counts != (Counts{RulesAdded: 2}) || k.Writes-writes != 3 {
		t.Fatalf("Apply with new ports = %+v (%+v) after %d batches, %d messages; want 2 rules added in batch 2", res, res.Plan, k.Batches, k.Writes-writes)
	}
	st, err := ReadStatus(context.Background(), mustBuild(t, cfg), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if !st.Installed || !st.Owned || !st.Matches || !reflect.DeepEqual(st.Ports, []uint16{21, 2121}) || st.Policy != PolicyDrop {
		t.Fatalf("status after replace = %+v", st)
	}
	// The old configuration no longer matches.
	st, err = ReadStatus(context.Background(), rs, WithKernel(k))
	if err != nil || st.Matches {
		t.Fatalf("status against old config = %+v, %v; want not matching", st, err)
	}
}

// A re-install right after an install finds the table's stamp at the
// current generation and reads nothing more; once anything else has been
// committed it compares the table in full, and still sends nothing.
func TestReinstallStamp(t *testing.T) {
	k := &fakekernel.Kernel{}
	cfg := DefaultConfig()
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	rs := mustBuild(t, cfg)
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	writes := k.Writes
	k.Gets = nil
	if res, err := Apply(context.Background(), rs, WithKernel(k)); err != nil || res.Changed {
		t.Fatalf("re-install = %+v, %v", res, err)
	}
	// The generation, the tables, the stamp chain's rule: nothing more.
	if k.Writes != writes || k.Gets[unix.NFT_MSG_GETCHAIN]+k.Gets[unix.NFT_MSG_GETSETELEM] != 0 || k.Gets[unix.NFT_MSG_GETRULE] != 1 {
		t.Fatalf("stamped re-install wrote %d messages and made requests %v", k.Writes-writes, k.Gets)
	}

	// Someone else commits: the stamp no longer proves anything.
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	other.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "someone_else"})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	writes = k.Writes
	k.Gets = nil
	if res, err := Apply(context.Background(), rs, WithKernel(k)); err != nil || res.Changed {
		t.Fatalf("re-install after another commit = %+v, %v", res, err)
	}
	if k.Writes != writes || k.Gets[unix.NFT_MSG_GETRULE] == 0 || k.Gets[unix.NFT_MSG_GETSETELEM] == 0 {
		t.Fatalf("re-install after another commit wrote %d messages, made requests %v; want a full read and no write", k.Writes-writes, k.Gets)
	}

	// A different ruleset is never taken for the stamped one.
	cfg.Ports = []uint16{2121}
	if res, err := Apply(context.Background(), mustBuild(t, cfg), WithKernel(k)); err != nil || !res.Changed {
		t.Fatalf("install of another ruleset = %+v, %v", res, err)
	}
}

// The kernel rejects the first message of each kind, in a batch that
// creates the table and in one that changes it: the error names that
// message by its place in the batch and what it asked for, and the failed
// batch leaves the kernel's state as it was.
func TestApplyFailureChangesNothing(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Allow = []Service{{"tcp", 22}}
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("2001:db8::/32")}
	rs := mustBuild(t, cfg)
	// What the change starts from: rules, a chain, sets and elements that
	// rs has not.
	from := DefaultConfig()
	from.Roles = []Role{RoleServer, RoleClient}
	from.Policy = PolicyAccept
	from.Allow = []Service{{"tcp", 80}}
	from.Block = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	from.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), netip.MustParsePrefix("203.0.113.0/24")}
	from.MaxConnPerSource = 2
	for _, tc := range []struct {
		from *Config // installed before; nil for none
		kind uint16
		want string
	}{
		{nil, unix.NFT_MSG_NEWTABLE, "batch message 1 of "},
		{nil, unix.NFT_MSG_NEWOBJ, "add object " + rs.Helpers[0].Name + ": "},
		{nil, unix.NFT_MSG_NEWSET, "add set ftp-ban4: "},
		{nil, unix.NFT_MSG_NEWSETELEM, "add elements to set ftp-sources4: "},
		{nil, unix.NFT_MSG_NEWCHAIN, "add chain " + rs.Chains[0].Name + ": "},
		{nil, unix.NFT_MSG_NEWRULE, fmt.Sprintf("add rule to chain %s (comment %q): ", rs.Chains[0].Name, commentPrefix+rs.Chains[0].Rules[0].Comment)},
		{&from, unix.NFT_MSG_DELRULE, "flush chain output: "}, // before it goes
		{&from, unix.NFT_MSG_DELCHAIN, "delete chain output: "},
		{&from, unix.NFT_MSG_DELSET, "delete set ftp-block4: "},
		{&from, unix.NFT_MSG_DELSETELEM, "delete elements from set ftp-sources4: "},
		{&from, unix.NFT_MSG_NEWSETELEM, "add elements to set ftp-sources6: "},
		{&from, unix.NFT_MSG_NEWCHAIN, "add chain input: "}, // its policy
		{&from, unix.NFT_MSG_NEWRULE, "rule "},
	} {
		k := &fakekernel.Kernel{}
		if tc.from != nil {
			if _, err := Apply(context.Background(), mustBuild(t, *tc.from), WithKernel(k)); err != nil {
				t.Fatal(err)
			}
		}
		before := k.State.Clone()
		k.FailOn, k.FailErr = &tc.kind, syscall.EINVAL
		_, err := Apply(context.Background(), rs, WithKernel(k))
		var e *Error
		if !errors.As(err, &e) || e.Op != "install" || e.Table != "ftpnft" || !errors.Is(err, syscall.EINVAL) {
			t.Fatalf("message type %d rejected (from %v): %v, want *Error naming install of table ftpnft, wrapping EINVAL", tc.kind, tc.from != nil, err)
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(e.Step, "batch message ") {
			t.Errorf("message type %d rejected: %q, want it to name %q", tc.kind, err, tc.want)
		}
		if !reflect.DeepEqual(k.State, before) {
			t.Fatalf("message type %d rejected: a failed batch changed the kernel's state", tc.kind)
		}
	}
}

func TestApplyPermission(t *testing.T) {
	newChain := uint16(unix.NFT_MSG_NEWCHAIN)
	k := &fakekernel.Kernel{FailOn: &newChain, FailErr: syscall.EPERM}
	_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	if !errors.Is(err, os.ErrPermission) {
		t.Fatalf("Apply error = %v, want errors.Is os.ErrPermission", err)
	}
}

// Failures of the batch as a whole are not blamed on a message: a commit
// that fails after every message was accepted, and the single answer the
// kernel gives when it has no memory left for its answers. The kernel's own
// words, when it has some, are part of the error.
func TestApplyBatchLevelErrors(t *testing.T) {
	for _, k := range []*fakekernel.Kernel{{CommitErr: syscall.ENOMEM}, {ResetErr: syscall.ENOMEM}} {
		_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
		var e *Error
		if !errors.As(err, &e) || e.Step != "" || !errors.Is(err, syscall.ENOMEM) || !strings.Contains(err.Error(), "batch of ") {
			t.Errorf("batch refused as a whole (%+v): %v, want *Error without Step, wrapping ENOMEM", *k, err)
		}
		if len(k.State.Tables) != 0 {
			t.Errorf("a refused batch changed the state")
		}
	}

	newRule := uint16(unix.NFT_MSG_NEWRULE)
	k := &fakekernel.Kernel{FailOn: &newRule, FailErr: syscall.EOPNOTSUPP, FailText: "Could not process rule"}
	_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	if err == nil || !strings.HasSuffix(err.Error(), "operation not supported (kernel: Could not process rule)") {
		t.Errorf("rule rejected with a message: %v, want the kernel's message at the end", err)
	}
}

// The error contract of the package doc: whichever message the kernel
// rejects, errors.Is finds the documented sentinel.
func TestErrorContract(t *testing.T) {
	for _, tc := range []struct {
		errno syscall.Errno
		want  error
	}{
		{syscall.EPERM, os.ErrPermission},
		{syscall.ENOENT, os.ErrNotExist},
		{syscall.EOPNOTSUPP, errors.ErrUnsupported},
		{syscall.EPROTONOSUPPORT, errors.ErrUnsupported},
		{syscall.EINVAL, syscall.EINVAL},
	} {
		newRule := uint16(unix.NFT_MSG_NEWRULE)
		k := &fakekernel.Kernel{FailOn: &newRule, FailErr: tc.errno}
		_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
		var e *Error
		if !errors.Is(err, tc.want) || !errors.As(err, &e) {
			t.Errorf("kernel answering %v: %v, want *Error and errors.Is %v", tc.errno, err, tc.want)
		}
	}
	// nfnetlink without nf_tables answers the first request with EINVAL.
	noNfTables := func(reqs []netlink.Message) ([]netlink.Message, error) {
		return nltest.Error(int(syscall.EINVAL), reqs)
	}
	if _, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), withDial(noNfTables)); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("kernel without nf_tables: %v, want errors.Is errors.ErrUnsupported", err)
	}
}

func TestForeignTableUntouched(t *testing.T) {
	k := &fakekernel.Kernel{}
	// Someone else's table named "ftpnft": a chain and a rule without ftpnft's comment.
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := other.AddTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: "ftpnft"})
	ch := other.AddChain(&nftables.Chain{Table: tbl, Name: "mine"})
	other.AddRule(&nftables.Rule{Table: tbl, Chain: ch, Exprs: accept.exprs()})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	before, writes := k.State.Clone(), k.Writes

	_, err = Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	if !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Apply over a foreign table: %v, want ErrNotOwned", err)
	}
	removed, err := Remove(context.Background(), "ftpnft", WithKernel(k))
	if removed || !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Remove of a foreign table = %v, %v; want ErrNotOwned", removed, err)
	}
	if k.Writes != writes || !reflect.DeepEqual(k.State, before) {
		t.Fatal("ftpnft wrote to a table it did not create")
	}
}

func TestRemove(t *testing.T) {
	k := &fakekernel.Kernel{}
	removed, err := Remove(context.Background(), "ftpnft", WithKernel(k))
	if err != nil || removed {
		t.Fatalf("Remove on empty kernel = %v, %v; want false, nil", removed, err)
	}
	if _, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	removed, err = Remove(context.Background(), "ftpnft", WithKernel(k))
	if err != nil || !removed {
		t.Fatalf("Remove = %v, %v; want true, nil", removed, err)
	}
	if len(k.State.Tables)+len(k.State.Chains)+len(k.State.Rules)+len(k.State.Objs) != 0 {
		t.Fatalf("state after Remove: %+v", k.State)
	}
}

func TestStatusNotInstalled(t *testing.T) {
	k := &fakekernel.Kernel{}
	st, err := ReadStatus(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	if err != nil {
		t.Fatal(err)
	}
	if st.Installed || st.Owned || st.Matches {
		t.Fatalf("status on empty kernel = %+v", st)
	}
}

func TestMissingNetNS(t *testing.T) {
	_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithNetNS(filepath.Join(t.TempDir(), "nope")))
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

// Another ftpnft creates the table between this one's read and its batch:
// the kernel refuses the batch, which was begun at the generation of the
// read, nothing is half-applied, and the second attempt changes the
// other's table into this one's: one table, one copy of each chain and
// rule.
func TestApplyRace(t *testing.T) {
	k := &fakekernel.Kernel{}
	mine := mustBuild(t, DefaultConfig())
	other := DefaultConfig()
	other.Ports = []uint16{2121}
	k.BeforeBatch = func() {
		if _, err := Apply(context.Background(), mustBuild(t, other), WithKernel(k)); err != nil {
			t.Errorf("the other install: %v", err)
		}
	}
	res, err := Apply(context.Background(), mine, WithKernel(k))
	if err != nil || !res.Changed || res.Plan.Create || res.Plan.Counts != (Counts{RulesAdded: 2, RulesDeleted: 2}) {
		t.Fatalf("Apply racing another install = %+v (%+v), %v; want the other's table changed", res, res.Plan, err)
	}
	st, err := ReadStatus(context.Background(), mine, WithKernel(k))
	if err != nil || !st.Matches || len(k.State.Tables) != 1 || len(k.State.Chains) != len(mine.Chains)+1 {
		t.Fatalf("after the race: status %+v, %v; %d tables, %d chains", st, err, len(k.State.Tables), len(k.State.Chains))
	}
}

// Another program uninstalls while ftpnft reads its table: the table was
// listed, its chains are gone. That torn view looks like a foreign table;
// ftpnft notices that the generation moved, reads again and installs.
func TestApplyTornRead(t *testing.T) {
	k := &fakekernel.Kernel{}
	rs := mustBuild(t, DefaultConfig())
	if _, err := Apply(context.Background(), rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	k.MidRead = func() {
		if removed, err := Remove(context.Background(), "ftpnft", WithKernel(k)); err != nil || !removed {
			t.Errorf("the other uninstall: %v, %v", removed, err)
		}
	}
	other := DefaultConfig()
	other.Ports = []uint16{2121}
	res, err := Apply(context.Background(), mustBuild(t, other), WithKernel(k))
	if err != nil || !res.Changed {
		t.Fatalf("Apply while the table is removed underneath = %+v, %v; want a fresh install", res, err)
	}
}

// A ruleset that changes between every read and batch is reported, not
// acted on.
func TestApplyGivesUpWhileRulesetChanges(t *testing.T) {
	k := &fakekernel.Kernel{Busy: true}
	_, err := Apply(context.Background(), mustBuild(t, DefaultConfig()), WithKernel(k))
	var e *Error
	if !errors.Is(err, ErrConcurrent) || !errors.As(err, &e) || e.Op != "install" {
		t.Fatalf("Apply under constant change: %v, want *Error wrapping ErrConcurrent", err)
	}
	if k.Writes != 0 || len(k.State.Tables) != 0 {
		t.Fatalf("wrote %d messages while giving up", k.Writes)
	}
}
