package nft

import (
	"net/netip"
	"strings"
	"testing"
)

// The parsers take user input from flags and config files. Each fuzz
// target checks that a parser never panics, that what it accepts prints
// back to an equal value, and that accepted values render as a ruleset
// whose text cannot be broken out of (no new statements, no quotes).

func renderSafe(t *testing.T, c Config) {
	t.Helper()
	rs, err := Build(c)
	if err != nil {
		return // Validate may still refuse a combination: fine
	}
	text := rs.Render()
	for _, line := range strings.Split(text, "\n") {
		if strings.Count(line, `"`)%2 != 0 || strings.Contains(line, ";") && !strings.Contains(line, "policy") {
			t.Fatalf("render line breaks out: %q", line)
		}
	}
}

func FuzzParseDNAT(f *testing.F) {
	for _, s := range []string{"21=192.0.2.10:21", "2121=[2001:db8::10]:21", "21=[::ffff:1.2.3.4]:21", "=:", "21=[", "1=1.1.1.1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDNAT(s)
		if err != nil {
			return
		}
		back, err := ParseDNAT(d.String())
		if err != nil || back != d {
			t.Fatalf("ParseDNAT(%q) = %v; its String %q parses to %v, %v", s, d, d.String(), back, err)
		}
		c := DefaultConfig()
		c.Roles, c.DNAT = []Role{RoleRouter}, []DNAT{d}
		renderSafe(t, c)
	})
}

func FuzzParseSource(f *testing.F) {
	for _, s := range []string{"192.0.2.0/24", "198.51.100.7", "2001:db8::/32", "::/0", "0.0.0.0/0", "1.2.3.4/33", "fe80::1%x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseSource(s)
		if err != nil {
			return
		}
		back, err := ParseSource(p.String())
		if err != nil || back != p {
			t.Fatalf("ParseSource(%q) = %v; parses back to %v, %v", s, p, back, err)
		}
		rs := mergeRanges([]netip.Prefix{p}, p.Addr().Is6())
		if len(rs) != 1 || rs[0].From != p.Addr() {
			t.Fatalf("mergeRanges(%v) = %v", p, rs)
		}
		if got := rangesOf(Set{Interval: true, Ranges: rs}.elements()); len(got) != 1 || got[0] != rs[0] {
			t.Fatalf("elements of %v decode to %v", p, got)
		}
	})
}

func FuzzParseRangesAndRates(f *testing.F) {
	for _, s := range []string{"1024-65535", "50000-50100", "1-1", "0-5", "10/second", "5/minute", "-", "/"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParsePortRange(s); err == nil {
			if back, err := ParsePortRange(r.String()); err != nil || back != r {
				t.Fatalf("ParsePortRange(%q) = %v; parses back to %v, %v", s, r, back, err)
			}
		}
		if r, err := ParseRate(s); err == nil {
			if back, err := ParseRate(r.String()); err != nil || back != r {
				t.Fatalf("ParseRate(%q) = %v; parses back to %v, %v", s, r, back, err)
			}
		}
	})
}

func FuzzConfigStrings(f *testing.F) {
	for _, s := range []string{"ftpnft", "x; flush ruleset", "eth0", `a"b`, "server,client", "tcp/22"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c := DefaultConfig()
		c.Table = s
		renderSafe(t, c)
		if iface, err := ParseInterface(s); err == nil {
			c := DefaultConfig()
			c.Roles, c.Masquerade = []Role{RoleRouter}, []string{iface}
			renderSafe(t, c)
		}
		if roles, err := ParseRoles(s); err == nil {
			c := DefaultConfig()
			c.Roles = roles
			renderSafe(t, c)
		}
		if svc, err := ParseService(s); err == nil {
			if back, err := ParseService(svc.String()); err != nil || back != svc {
				t.Fatalf("ParseService(%q) = %v; parses back to %v, %v", s, svc, back, err)
			}
		}
	})
}
