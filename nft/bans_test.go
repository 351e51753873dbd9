package nft

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/ftpnft/ftpnft/nft/internal/fakekernel"
)

func banNets(t *testing.T, bans []Ban) []string {
	t.Helper()
	var out []string
	for _, b := range bans {
		out = append(out, b.Net.String())
	}
	return out
}

// Bans merge with the bans they overlap, split when part of one is lifted,
// survive a change of the configuration, keep the table's stamp proving
// it, and need an installed table.
func TestBans(t *testing.T) {
	ctx := context.Background()
	k := &fakekernel.Kernel{}
	p := netip.MustParsePrefix
	if err := AddBans(ctx, DefaultTable, []netip.Prefix{p("192.0.2.7/32")}, 0, WithKernel(k)); !errors.Is(err, ErrNotInstalled) {
		t.Fatalf("a ban without a table = %v, want ErrNotInstalled", err)
	}
	rs := mustBuild(t, DefaultConfig())
	if _, err := Apply(ctx, rs, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		ban, unban []netip.Prefix
		want       []string
	}{
		{ban: []netip.Prefix{p("192.0.2.7/32"), p("2001:db8::/64")}, want: []string{"192.0.2.7", "2001:db8::/64"}},
		{ban: []netip.Prefix{p("192.0.2.7/32")}, want: []string{"192.0.2.7", "2001:db8::/64"}}, // extended
		{ban: []netip.Prefix{p("192.0.2.0/24")}, want: []string{"192.0.2.0/24", "2001:db8::/64"}},
		{ban: []netip.Prefix{p("192.0.3.0/24")}, want: []string{"192.0.2.0/24", "192.0.3.0/24", "2001:db8::/64"}},
		{unban: []netip.Prefix{p("192.0.2.9/32")}, want: []string{"192.0.2.0-192.0.2.8", "192.0.2.10-192.0.2.255", "192.0.3.0/24", "2001:db8::/64"}},
		{unban: []netip.Prefix{p("198.51.100.1/32")}, want: []string{"192.0.2.0-192.0.2.8", "192.0.2.10-192.0.2.255", "192.0.3.0/24", "2001:db8::/64"}},
		{unban: []netip.Prefix{p("192.0.0.0/16"), p("2001:db8::/32")}, want: nil},
	}
	for i, s := range steps {
		if s.ban != nil {
			if err := AddBans(ctx, DefaultTable, s.ban, time.Hour, WithKernel(k)); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		if s.unban != nil {
			if _, err := RemoveBans(ctx, DefaultTable, s.unban, WithKernel(k)); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		bans, err := ReadBans(ctx, DefaultTable, WithKernel(k))
		if err != nil || !slices.Equal(banNets(t, bans), s.want) {
			t.Fatalf("step %d: bans %v, %v; want %v", i, banNets(t, bans), err, s.want)
		}
		// The stamp still proves the table: a re-install reads nothing.
		if ok, err := stampHolds(ctx, k, rs); err != nil || !ok {
			t.Fatalf("step %d: the ban left the stamp unproven (%v)", i, err)
		}
	}
	if err := AddBans(ctx, DefaultTable, []netip.Prefix{p("203.0.113.0/24")}, 0, WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Allow = []Service{{"tcp", 22}}
	if _, err := Apply(ctx, mustBuild(t, cfg), WithKernel(k)); err != nil {
		t.Fatal(err)
	}
	st, err := ReadStatus(ctx, mustBuild(t, cfg), WithKernel(k))
	if err != nil || !st.Matches || st.Bans != 1 {
		t.Fatalf("after install with other flags: status %+v, %v; want 1 ban kept", st, err)
	}
}

// stampHolds reports whether rs's stamp holds in the fake kernel k.
func stampHolds(ctx context.Context, k *fakekernel.Kernel, rs *Ruleset) (bool, error) {
	c, release, err := connect(ctx, []Option{WithKernel(k)})
	if err != nil {
		return false, err
	}
	defer release()
	return c.stamped(rs.Table, rs.fingerprint())
}
