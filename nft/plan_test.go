package nft

import (
	"bytes"
	"context"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

func TestAlignRules(t *testing.T) {
	for _, tt := range []struct {
		name      string
		got, want []string
		forced    []int
		match     []int
	}{
		{"same", []string{"a", "b", "c"}, []string{"a", "b", "c"}, nil, []int{0, 1, 2}},
		{"one added in the middle", []string{"a", "c"}, []string{"a", "b", "c"}, nil, []int{0, -1, 1}},
		{"one deleted", []string{"a", "b", "c"}, []string{"a", "c"}, nil, []int{0, 2}},
		{"added at the head", []string{"b", "c"}, []string{"a", "b", "c"}, nil, []int{-1, 0, 1}},
		{"moved", []string{"a", "b", "c", "d"}, []string{"d", "a", "b", "c"}, nil, []int{-1, 0, 1, 2}},
		{"swapped", []string{"a", "b"}, []string{"b", "a"}, nil, []int{1, -1}},
		{"forced rule is not kept", []string{"a", "b", "c"}, []string{"a", "b", "c"}, []int{1}, []int{0, -1, 2}},
		{"all new", []string{"x", "y"}, []string{"a", "b"}, nil, []int{-1, -1}},
		{"empty chain", nil, []string{"a"}, nil, []int{-1}},
		{"duplicates", []string{"a", "a", "b"}, []string{"a", "b", "a"}, nil, []int{0, 2, -1}},
	} {
		forced := make([]bool, len(tt.got))
		for _, i := range tt.forced {
			forced[i] = true
		}
		if got := alignRules(tt.got, tt.want, forced); !slices.Equal(got, tt.match) {
			t.Errorf("%s: alignRules(%q, %q) = %v, want %v", tt.name, tt.got, tt.want, got, tt.match)
		}
	}
}

func rangesOfText(t *testing.T, cidrs ...string) []AddrRange {
	t.Helper()
	var ps []netip.Prefix
	for _, c := range cidrs {
		ps = append(ps, netip.MustParsePrefix(c))
	}
	if len(ps) == 0 {
		return nil
	}
	return mergeRanges(ps, ps[0].Addr().Is6())
}

func TestRangeChanges(t *testing.T) {
	for _, tt := range []struct {
		got, want, del, add []string
	}{
		{[]string{"10.0.0.0/24"}, []string{"10.0.0.0/24"}, nil, nil},
		{[]string{"10.0.0.0/24"}, []string{"10.0.0.0/24", "10.0.2.0/24"}, nil, []string{"10.0.2.0/24"}},
		{[]string{"10.0.0.0/24", "10.0.2.0/24"}, []string{"10.0.2.0/24"}, []string{"10.0.0.0/24"}, nil},
		// A range that grows is deleted whole and added whole.
		{[]string{"10.0.0.0/24"}, []string{"10.0.0.0/23"}, []string{"10.0.0.0/24"}, []string{"10.0.0.0/23"}},
		{[]string{"10.0.0.0/16"}, []string{"10.0.0.0/24", "10.0.2.0/24"}, []string{"10.0.0.0/16"}, []string{"10.0.0.0/24", "10.0.2.0/24"}},
		{nil, []string{"0.0.0.0/1"}, nil, []string{"0.0.0.0/1"}},
	} {
		del, add := rangeChanges(rangesOfText(t, tt.got...), rangesOfText(t, tt.want...))
		if !slices.Equal(del, rangesOfText(t, tt.del...)) || !slices.Equal(add, rangesOfText(t, tt.add...)) {
			t.Errorf("rangeChanges(%v, %v) = %v, %v; want %v, %v", tt.got, tt.want, del, add, tt.del, tt.add)
		}
	}
}

func TestCountsString(t *testing.T) {
	for _, tt := range []struct {
		c    Counts
		want string
	}{
		{Counts{}, "nothing"},
		{Counts{RulesAdded: 2, ElementsAdded: 1}, "2 rules added, 1 set element added"},
		{Counts{PoliciesChanged: 1, RulesReplaced: 1, ElementsDeleted: 3}, "1 rule replaced, 3 set elements deleted, 1 chain policy changed"},
		{Counts{PoliciesChanged: 2, HelpersAdded: 1, HelpersDeleted: 1}, "2 chain policies changed, 1 ct helper added, 1 ct helper deleted"},
	} {
		if got := tt.c.String(); got != tt.want {
			t.Errorf("%+v.String() = %q, want %q", tt.c, got, tt.want)
		}
	}
}

// The state file holds the sets' ranges exactly, for both families; a
// damaged or truncated file is refused, never half read.
func TestStateFile(t *testing.T) {
	sets := []Set{
		{Name: "ftp-sources4", Interval: true, Ranges: rangesOfText(t, "10.0.0.0/8", "192.0.2.7/32")},
		{Name: "ftp-sources6", V6: true, Interval: true, Ranges: rangesOfText(t, "2001:db8::/32", "::/1")},
		{Name: "ftp-block4", Interval: true},
	}
	fp := fingerprint{1, 2, 3}
	b := encodeState(sets, fp)
	got, gotFP, err := decodeState(b)
	if err != nil || gotFP != fp || len(got) != len(sets) {
		t.Fatalf("decodeState = %v, %x, %v", got, gotFP, err)
	}
	for i := range sets {
		if got[i].Name != sets[i].Name || got[i].V6 != sets[i].V6 || !slices.Equal(got[i].Ranges, sets[i].Ranges) {
			t.Errorf("set %d: got %+v, want %+v", i, got[i], sets[i])
		}
	}
	for n := range len(b) {
		if _, _, err := decodeState(b[:n]); err == nil {
			t.Fatalf("a state file cut at %d of %d bytes was read", n, len(b))
		}
	}
	if _, _, err := decodeState(append(bytes.Clone(b), 0)); err == nil {
		t.Fatal("a state file with a byte too many was read")
	}
}

// remember writes a file only when it holds other sets, and forget
// removes it; a state directory that cannot be written is an error
// Apply reports, not a failure.
func TestRememberAndForget(t *testing.T) {
	dir := t.TempDir()
	c := &conn{stateDir: dir, dial: func([]netlink.Message) ([]netlink.Message, error) { return nil, nil }}
	rs := &Ruleset{Table: "ftpnft", Sets: []Set{{Name: "ftp-sources4", Interval: true, Ranges: rangesOfText(t, "10.0.0.0/8")}}}
	fp := rs.fingerprint()
	if err := c.remember(rs, fp); err != nil {
		t.Fatal(err)
	}
	path, _ := c.statePath("ftpnft")
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if recalled := c.recall("ftpnft"); recalled == nil || !slices.Equal(recalled.Sets[0].Ranges, rs.Sets[0].Ranges) {
		t.Fatalf("recall = %+v", recalled)
	}
	if err := c.remember(rs, fp); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.Stat(path); !again.ModTime().Equal(info.ModTime()) || again.Sys() == nil {
		t.Errorf("remembering the same sets again rewrote the file")
	}
	if err := c.forget("ftpnft"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("forget left %s: %v", path, err)
	}
	if _, err := c.statePath("../x"); err == nil {
		t.Error("a table name with a path in it named a state file")
	}
	blocked := &conn{stateDir: filepath.Join(dir, "file", "sub"), dial: c.dial}
	if err := os.WriteFile(filepath.Join(dir, "file"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := blocked.remember(rs, fp); err == nil {
		t.Error("remember in a directory that cannot be made succeeded")
	}
}

// diffConfigs are configurations that differ in every way the planner
// distinguishes: roles (chains added and deleted), ports and services
// (rules), policy, sets and their elements, set types (a limit added to
// ftp-control), the jump to ftp-control, NAT.
func diffConfigs() map[string]Config {
	base := DefaultConfig()
	with := func(f func(*Config)) Config {
		c := DefaultConfig()
		f(&c)
		return c
	}
	p := netip.MustParsePrefix
	return map[string]Config{
		"default": base,
		"ports and allow": with(func(c *Config) {
			c.Ports = []uint16{2121, 21}
			c.Allow = []Service{{"tcp", 22}, {"udp", 53}}
		}),
		"policy accept, related ports": with(func(c *Config) {
			c.Policy = PolicyAccept
			c.RelatedPorts = PortRange{2000, 3000}
		}),
		"sources": with(func(c *Config) {
			c.Sources = []netip.Prefix{p("192.0.2.0/24"), p("198.51.100.7/32"), p("2001:db8::/32")}
		}),
		"other sources, limits": with(func(c *Config) {
			c.Sources = []netip.Prefix{p("192.0.2.0/25"), p("198.51.100.7/32"), p("0.0.0.0/8")}
			c.MaxConnPerSource = 3
			c.ConnRate = Rate{N: 10, Unit: "minute"}
		}),
		"block and passive": with(func(c *Config) {
			c.Block = []netip.Prefix{p("203.0.113.0/24"), p("2001:db8:dead::/48")}
			c.PassivePorts = PortRange{40000, 40100}
			c.Sources = []netip.Prefix{p("192.0.2.0/24")}
		}),
		"router": with(func(c *Config) {
			c.Roles = []Role{RoleRouter}
			c.DNAT = []DNAT{{ListenPort: 21, To: netip.MustParseAddrPort("10.0.0.2:21")}}
			c.Masquerade = []string{"wan0"}
			c.MaxConnPerSource = 2
		}),
		"everything": with(func(c *Config) {
			c.Roles = []Role{RoleServer, RoleClient, RoleRouter}
			c.Ports = []uint16{21, 990}
			c.Allow = []Service{{"tcp", 22}}
			c.Block = []netip.Prefix{p("203.0.113.0/24")}
			c.Sources = []netip.Prefix{p("10.0.0.0/8"), p("2001:db8::/32")}
			c.MaxConnPerSource = 2
			c.DNAT = []DNAT{{ListenPort: 2121, To: netip.MustParseAddrPort("[2001:db8::10]:21")}}
		}),
	}
}

// ruleHandles maps each rule of the fake's table, by chain and content, to
// its handle.
func ruleHandles(t *testing.T, k *fakekernel.Kernel) map[string]uint64 {
	t.Helper()
	c, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	tbl := &nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]uint64{}
	for _, ch := range chains {
		rules, err := c.GetRules(tbl, ch)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rules {
			out[ch.Name+" "+ruleFP{exprs: r.Exprs, udata: r.UserData}.key()] = r.Handle
		}
	}
	return out
}

// Changing any configuration into any other by difference gives the table
// a fresh install of the second gives (the same dump, and status matches
// it), and every rule that both have keeps its handle: it was not touched.
func TestApplyByDifferenceEqualsFreshInstall(t *testing.T) {
	ctx := context.Background()
	configs := diffConfigs()
	for fromName, from := range configs {
		for toName, to := range configs {
			changed := &fakekernel.Kernel{}
			if _, err := Apply(ctx, mustBuild(t, from), WithKernel(changed)); err != nil {
				t.Fatalf("%s: %v", fromName, err)
			}
			before := ruleHandles(t, changed)
			res, err := Apply(ctx, mustBuild(t, to), WithKernel(changed))
			if err != nil {
				t.Fatalf("%s -> %s: %v", fromName, toName, err)
			}
			if res.Changed != (fromName != toName) || res.Repaired {
				t.Errorf("%s -> %s: %+v (%s)", fromName, toName, res, res.Plan.Counts)
			}
			fresh := &fakekernel.Kernel{}
			if _, err := Apply(ctx, mustBuild(t, to), WithKernel(fresh)); err != nil {
				t.Fatal(err)
			}
			got, err := Dump(ctx, DefaultTable, WithKernel(changed))
			if err != nil {
				t.Fatal(err)
			}
			want, err := Dump(ctx, DefaultTable, WithKernel(fresh))
			if err != nil {
				t.Fatal(err)
			}
			// Chains and sets are listed in the order they were made.
			if sortedBlocks(got) != sortedBlocks(want) {
				t.Errorf("%s -> %s by difference (%s):\n%s\nfresh install:\n%s\nsteps:\n%s", fromName, toName, res.Plan.Counts, got, want, strings.Join(res.Plan.Steps(), "\n"))
				continue
			}
			st, err := ReadStatus(ctx, mustBuild(t, to), WithKernel(changed))
			if err != nil || !st.Matches || st.Modified {
				t.Errorf("%s -> %s: status %+v, %v", fromName, toName, st, err)
			}
			// The stamp rule is replaced by handle; the loopback rule moves
			// (before the blocklist, when there is one), and the kernel
			// moves no rule: it is deleted and added again.
			loopback := Rule{Comment: "loopback", stmts: []stmt{iifname{"lo"}, accept}}
			moved := "input " + ruleFP{exprs: loopback.exprs(), udata: loopback.userData()}.key()
			for key, h := range ruleHandles(t, changed) {
				if old, ok := before[key]; ok && old != h && key != moved && !strings.HasPrefix(key, stampChain+" ") {
					t.Errorf("%s -> %s: rule %s had handle %d, now %d", fromName, toName, key[:min(len(key), 40)], old, h)
				}
			}
			// A second apply finds nothing to do.
			if res, err := Apply(ctx, mustBuild(t, to), WithKernel(changed)); err != nil || res.Changed {
				t.Errorf("%s -> %s again: %+v, %v", fromName, toName, res, err)
			}
		}
	}
}

// sortedBlocks sorts the blank-line separated blocks of a dump.
func sortedBlocks(dump string) string {
	dump = strings.TrimSuffix(strings.TrimPrefix(dump, "table inet "+DefaultTable+" {\n"), "}\n")
	blocks := strings.Split(strings.TrimSpace(dump), "\n\n")
	slices.Sort(blocks)
	return strings.Join(blocks, "\n\n")
}

// Three configurations in a row: a chain added by a change comes after
// the ones made first, so chains that go are deleted in another order than
// a fresh table's. Every path A -> B -> C ends as a fresh install of C.
func TestApplyByDifferenceThreeSteps(t *testing.T) {
	ctx := context.Background()
	configs := diffConfigs()
	names := slices.Sorted(maps.Keys(configs))
	for _, a := range names {
		for _, b := range names {
			for _, c := range names {
				k := &fakekernel.Kernel{}
				for _, name := range []string{a, b, c} {
					if _, err := Apply(ctx, mustBuild(t, configs[name]), WithKernel(k)); err != nil {
						t.Fatalf("%s -> %s -> %s, at %s: %v", a, b, c, name, err)
					}
				}
				fresh := &fakekernel.Kernel{}
				if _, err := Apply(ctx, mustBuild(t, configs[c]), WithKernel(fresh)); err != nil {
					t.Fatal(err)
				}
				got, _ := Dump(ctx, DefaultTable, WithKernel(k))
				want, _ := Dump(ctx, DefaultTable, WithKernel(fresh))
				if sortedBlocks(got) != sortedBlocks(want) {
					t.Errorf("%s -> %s -> %s differs from a fresh install:\n%s\nwant:\n%s", a, b, c, got, want)
				}
			}
		}
	}
}

// A range that starts at the zero address deleted by hand, as nft deletes
// it (start and end, no interval end at zero left): the repair adds it
// back without deleting an interval end at zero that is not there.
func TestRepairRangeFromZero(t *testing.T) {
	ctx := context.Background()
	k := &fakekernel.Kernel{}
	cfg := DefaultConfig()
	cfg.Block = []netip.Prefix{netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("10.0.0.0/8")}
	rs := mustBuild(t, cfg)
	if _, err := Apply(ctx, rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	set := &nftables.Set{Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable}, Name: "ftp-block4", KeyType: nftables.TypeIPAddr, Interval: true}
	if err := other.SetDeleteElements(set, []nftables.SetElement{{Key: []byte{0, 0, 0, 0}}, {Key: []byte{1, 0, 0, 0}, IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, c := range [][]string{{"0.0.0.0/8", "10.0.0.0/8"}, {"10.0.0.0/8", "20.0.0.0/8"}, {"0.0.0.0/0"}} {
		cfg.Block = nil
		for _, p := range c {
			cfg.Block = append(cfg.Block, netip.MustParsePrefix(p))
		}
		if _, err := Apply(ctx, mustBuild(t, cfg), WithKernel(k)); err != nil {
			t.Fatalf("block %v after a range from zero was deleted by hand: %v", c, err)
		}
		if st, err := ReadStatus(ctx, mustBuild(t, cfg), WithKernel(k), WithVerify()); err != nil || !st.Matches {
			t.Fatalf("block %v: status %+v, %v", c, st, err)
		}
	}
}

// A stamp chain emptied by hand in a table that holds the configuration:
// status says the table was changed, install writes the stamp alone, and
// then status is content.
func TestRepairLostStamp(t *testing.T) {
	ctx := context.Background()
	k := &fakekernel.Kernel{}
	first, second := DefaultConfig(), DefaultConfig()
	second.Ports = []uint16{21, 2121}
	for _, c := range []Config{first, second} {
		if _, err := Apply(ctx, mustBuild(t, c), WithKernel(k)); err != nil {
			t.Fatal(err)
		}
	}
	other, err := nftables.New(nftables.WithTestDial(k.Dial))
	if err != nil {
		t.Fatal(err)
	}
	other.FlushChain(&nftables.Chain{Name: stampChain, Table: &nftables.Table{Family: nftables.TableFamilyINet, Name: DefaultTable}})
	if err := other.Flush(); err != nil {
		t.Fatal(err)
	}
	rs := mustBuild(t, second)
	if st, err := ReadStatus(ctx, rs, WithKernel(k)); err != nil || !st.Modified {
		t.Fatalf("status with the stamp lost = %+v, %v; want modified", st, err)
	}
	res, err := Apply(ctx, rs, WithKernel(k))
	if err != nil || !res.Changed || !res.Repaired || res.Plan.Counts != (Counts{}) || len(res.Plan.Steps()) != 2 {
		t.Fatalf("install with the stamp lost = %+v (%q), %v; want the stamp chain made again, and nothing else", res, res.Plan.Steps(), err)
	}
	if st, err := ReadStatus(ctx, rs, WithKernel(k)); err != nil || st.Modified || !st.Matches {
		t.Fatalf("status after the repair = %+v, %v", st, err)
	}
}

// Two Apply calls at once, each to its own kernel, share no state: under
// the race detector this failed while google/nftables numbered the sets
// (a package counter it does not guard).
func TestApplyConcurrently(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Sources = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	done := make(chan error)
	for range 4 {
		go func() {
			_, err := Apply(context.Background(), mustBuild(t, cfg), WithKernel(&fakekernel.Kernel{}))
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}
