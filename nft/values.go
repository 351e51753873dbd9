package nft

import (
	"bytes"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/internal/input"
)

// Policy is the verdict of a policy chain for packets no rule accepted.
type Policy string

// The two chain policies.
const (
	PolicyDrop   Policy = "drop"
	PolicyAccept Policy = "accept"
)

// ParsePolicy parses "drop" or "accept".
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyDrop, PolicyAccept:
		return p, nil
	}
	return "", fmt.Errorf("policy %s: want drop or accept", input.Quote(s))
}

// Service is an extra service the input policy admits, such as tcp/22.
type Service struct {
	Protocol string // "tcp" or "udp"
	Port     uint16
}

// String formats s as "proto/port", the form [ParseService] reads.
func (s Service) String() string { return fmt.Sprintf("%s/%d", s.Protocol, s.Port) }

// ParseService parses "tcp/22" or "udp/53".
func ParseService(s string) (Service, error) {
	proto, port, ok := strings.Cut(s, "/")
	if !ok {
		return Service{}, fmt.Errorf("service %s: want PROTO/PORT such as tcp/22", input.Quote(s))
	}
	if proto != "tcp" && proto != "udp" {
		return Service{}, fmt.Errorf("service %s: protocol %s: want tcp or udp", input.Quote(s), input.Quote(proto))
	}
	p, err := helper.ParsePort(port)
	if err != nil {
		return Service{}, fmt.Errorf("service %s: %w", input.Quote(s), err)
	}
	return Service{Protocol: proto, Port: p}, nil
}

// Role is what this host does with FTP; a host can have several.
type Role string

// The roles.
const (
	// RoleServer: FTP servers run on this host. Inbound control
	// connections get the helper and the input chain admits them.
	RoleServer Role = "server"
	// RoleClient: this host opens FTP connections. Outbound control
	// connections get the helper (output hook), so that active-mode data
	// connections from the server arrive as RELATED.
	RoleClient Role = "client"
	// RoleRouter: FTP passes through this host. Forwarded control
	// connections get the helper and a forward chain applies the policy;
	// DNAT and masquerade need this role.
	RoleRouter Role = "router"
)

// Roles returns all roles, in the order ftpnft lists them.
func Roles() []Role { return []Role{RoleServer, RoleClient, RoleRouter} }

// ParseRoles parses a comma-separated list of roles such as "server,client".
func ParseRoles(s string) ([]Role, error) {
	var roles []Role
	for _, item := range strings.Split(s, ",") {
		roles = append(roles, Role(strings.TrimSpace(item)))
	}
	if err := validateRoles(roles); err != nil {
		return nil, err
	}
	return roles, nil
}

func validateRoles(roles []Role) error {
	if len(roles) == 0 {
		return fmt.Errorf("roles: at least one of server, client, router is needed")
	}
	for _, r := range roles {
		if !slices.Contains(Roles(), r) {
			return fmt.Errorf("role %s: want server, client or router (comma separated)", input.Quote(string(r)))
		}
	}
	if r, ok := firstDuplicate(roles); ok {
		return fmt.Errorf("role %s listed twice", input.Quote(string(r)))
	}
	return nil
}

// firstDuplicate returns the first value of xs that occurs earlier in xs.
func firstDuplicate[T comparable](xs []T) (T, bool) {
	seen := make(map[T]bool, len(xs))
	for _, x := range xs {
		if seen[x] {
			return x, true
		}
		seen[x] = true
	}
	var zero T
	return zero, false
}

// DNAT forwards FTP control connections that reach this host on ListenPort
// to an inner server, To. The ftp helper is assigned to them, so that
// nf_nat_ftp rewrites the addresses in the inner server's PASV/EPSV replies
// and the data connections are translated along.
type DNAT struct {
	ListenPort uint16
	To         netip.AddrPort
}

// String formats d as "LISTENPORT=ADDR:PORT", the form [ParseDNAT] reads.
func (d DNAT) String() string { return fmt.Sprintf("%d=%s", d.ListenPort, d.To) }

// ParseDNAT parses "LISTENPORT=ADDR:PORT", such as "21=192.0.2.10:21" or
// "2121=[2001:db8::10]:21".
func ParseDNAT(s string) (DNAT, error) {
	listen, to, ok := strings.Cut(s, "=")
	if !ok {
		return DNAT{}, fmt.Errorf("dnat %s: want LISTENPORT=ADDR:PORT such as 21=192.0.2.10:21 or 21=[2001:db8::10]:21", input.Quote(s))
	}
	lp, err := helper.ParsePort(listen)
	if err != nil {
		return DNAT{}, fmt.Errorf("dnat %s: listen %w", input.Quote(s), err)
	}
	host, port, err := splitHostPort(to)
	if err != nil {
		return DNAT{}, fmt.Errorf("dnat %s: target %s: %w", input.Quote(s), input.Quote(to), err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return DNAT{}, fmt.Errorf("dnat %s: target address %s: not an IPv4 or IPv6 address", input.Quote(s), input.Quote(host))
	}
	p, err := helper.ParsePort(port)
	if err != nil {
		return DNAT{}, fmt.Errorf("dnat %s: target %w", input.Quote(s), err)
	}
	d := DNAT{ListenPort: lp, To: netip.AddrPortFrom(addr, p)}
	if err := d.validate(); err != nil {
		return DNAT{}, err
	}
	return d, nil
}

// splitHostPort splits "ADDR:PORT" or "[ADDR]:PORT", insisting on the
// brackets for IPv6, where the last colon would otherwise be ambiguous.
func splitHostPort(s string) (host, port string, err error) {
	if rest, ok := strings.CutPrefix(s, "["); ok {
		host, port, ok = strings.Cut(rest, "]:")
		if !ok {
			return "", "", fmt.Errorf("want [ADDR]:PORT")
		}
		return host, port, nil
	}
	i := strings.LastIndex(s, ":")
	if i < 0 {
		return "", "", fmt.Errorf("want ADDR:PORT (the port is required)")
	}
	host, port = s[:i], s[i+1:]
	if strings.Contains(host, ":") {
		return "", "", fmt.Errorf("an IPv6 target needs brackets: [ADDR]:PORT")
	}
	return host, port, nil
}

func (d DNAT) validate() error {
	a := d.To.Addr()
	switch {
	case d.ListenPort == 0:
		return fmt.Errorf("dnat %s: listen port 0: out of range 1-65535", d)
	case d.To.Port() == 0:
		return fmt.Errorf("dnat %s: target port 0: out of range 1-65535", d)
	case !a.IsValid():
		return fmt.Errorf("dnat %s: no target address", d)
	case a.Zone() != "":
		return fmt.Errorf("dnat %s: target address %s: a zone (%%%s) cannot be matched by nftables", d, a, a.Zone())
	case a.Is4In6():
		return fmt.Errorf("dnat %s: target address %s is IPv4-mapped: write it as %s", d, a, a.Unmap())
	case a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() || a.IsLinkLocalUnicast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
		return fmt.Errorf("dnat %s: target address %s: want a routable unicast address of the inner server", d, a)
	}
	return nil
}

// ifaceChars are what ftpnft accepts in a network interface name: what the
// kernel accepts (at most 15 bytes, no '/', ':' or white space), narrowed
// to characters that need no quoting anywhere.
const ifaceChars = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.@+-"

// ParseInterface checks a network interface name such as "eth0".
func ParseInterface(s string) (string, error) {
	if len(s) == 0 || len(s) > 15 || strings.Trim(s, ifaceChars) != "" || s == "." || s == ".." {
		return "", fmt.Errorf("interface %s: want 1 to 15 letters, digits or '_', '.', '@', '+', '-'", input.Quote(s))
	}
	return s, nil
}

// PortRange is an inclusive range of TCP ports, LO-HI.
type PortRange struct {
	Lo, Hi uint16
}

// String formats r as "LO-HI", the form [ParsePortRange] reads.
func (r PortRange) String() string { return fmt.Sprintf("%d-%d", r.Lo, r.Hi) }

// IsZero reports whether r is unset.
func (r PortRange) IsZero() bool { return r == PortRange{} }

// ParsePortRange parses "LO-HI" such as "50000-50100".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, ok := strings.Cut(s, "-")
	if !ok {
		return PortRange{}, fmt.Errorf("port range %s: want LO-HI such as 50000-50100", input.Quote(s))
	}
	l, err := helper.ParsePort(lo)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %s: %w", input.Quote(s), err)
	}
	h, err := helper.ParsePort(hi)
	if err != nil {
		return PortRange{}, fmt.Errorf("port range %s: %w", input.Quote(s), err)
	}
	r := PortRange{l, h}
	return r, r.validate("port range")
}

func (r PortRange) validate(what string) error {
	if r.Lo == 0 || r.Lo > r.Hi {
		return fmt.Errorf("%s %s: want 1 <= LO <= HI <= 65535", what, r)
	}
	return nil
}

// Rate is a number of events per second or per minute.
type Rate struct {
	N    uint64
	Unit string // "second" or "minute"
}

// String formats r as "N/UNIT", the form [ParseRate] reads.
func (r Rate) String() string { return fmt.Sprintf("%d/%s", r.N, r.Unit) }

// IsZero reports whether r is unset.
func (r Rate) IsZero() bool { return r == Rate{} }

// ParseRate parses "N/second" or "N/minute".
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(s, "/")
	v, err := strconv.ParseUint(n, 10, 32)
	if !ok || err != nil {
		return Rate{}, fmt.Errorf("rate %s: want N/second or N/minute with N a positive number", input.Quote(s))
	}
	r := Rate{N: v, Unit: unit}
	return r, r.validate()
}

func (r Rate) validate() error {
	if r.N == 0 || r.N > 1<<31 {
		return fmt.Errorf("rate %s: want N from 1 to %d", r, 1<<31)
	}
	if r.Unit != "second" && r.Unit != "minute" {
		return fmt.Errorf("rate %s: unit %s: want second or minute", r, input.Quote(r.Unit))
	}
	return nil
}

// ParseSource parses a source network in CIDR notation, or a single
// address. Host bits must be zero, so that a typo cannot widen the
// allowlist silently.
func ParseSource(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("source %s: not an address or CIDR", input.Quote(s))
		}
		return netip.PrefixFrom(a, a.BitLen()), validateSource(netip.PrefixFrom(a, a.BitLen()))
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("source %s: not a CIDR (%v)", input.Quote(s), err)
	}
	return p, validateSource(p)
}

func validateSource(p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return fmt.Errorf("source %s: not a CIDR", p)
	case p.Addr().Zone() != "":
		return fmt.Errorf("source %s: zones cannot be matched", p)
	case p.Addr().Is4In6():
		return fmt.Errorf("source %s is IPv4-mapped: write it as IPv4", p)
	case p.Masked() != p:
		return fmt.Errorf("source %s: host bits set; did you mean %s?", p, p.Masked())
	}
	return nil
}

// MaxSourceFileSize is the largest source file [ReadSourceFile] reads:
// 256 MiB, five times a million IPv6 networks with a comment each.
const MaxSourceFileSize = 256 << 20

// ReadSourceFile reads sources from a file: one CIDR or address per line;
// blank lines and everything after '#' or ';' are ignored, so FireHOL's
// netsets and Spamhaus DROP ("192.0.2.0/24 ; SBL123") load as they are. Errors name the file
// and line. Only a regular file of at most [MaxSourceFileSize] bytes is
// read: a FIFO, a device or a larger file is an error at once.
func ReadSourceFile(path string) ([]netip.Prefix, error) {
	data, err := input.ReadFile(path, MaxSourceFileSize)
	if err != nil {
		return nil, fmt.Errorf("source file: %w", err)
	}
	out := make([]netip.Prefix, 0, bytes.Count(data, []byte{'\n'})+1)
	text := string(data) // one copy; the lines are slices of it
	for n := 1; len(text) > 0; n++ {
		var line string
		line, text, _ = strings.Cut(text, "\n")
		line, _, _ = strings.Cut(line, "#")
		line, _, _ = strings.Cut(line, ";")
		line = strings.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, err := ParseSource(line)
		if err != nil {
			return nil, fmt.Errorf("source file %s:%d: %w", input.Clip(path), n, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// DefaultRelatedPorts returns the ports related data connections may go to:
// the unprivileged ones. An FTP client or server never needs a data
// connection to a privileged port; an attacker who talks the helper into
// expecting one (FTP bounce, NAT slipstreaming) does.
func DefaultRelatedPorts() PortRange { return PortRange{1024, 65535} }

// The configuration's values marshal as text both ways, in the forms that
// flags and config files take (`"21=203.0.113.2:21"`, `"1024-65535"`,
// `"10/minute"`, `"tcp/22"`), so that JSON (status --json) and config files
// say a value one way. An unset PortRange or Rate is "".

// MarshalText formats p as ParsePolicy reads it.
func (p Policy) MarshalText() ([]byte, error) { return []byte(p), nil }

// UnmarshalText parses "drop" or "accept".
func (p *Policy) UnmarshalText(b []byte) error { return unmarshal(p, b, ParsePolicy) }

// MarshalText formats r as its name.
func (r Role) MarshalText() ([]byte, error) { return []byte(r), nil }

// UnmarshalText parses one role: "server", "client" or "router".
func (r *Role) UnmarshalText(b []byte) error {
	return unmarshal(r, b, func(s string) (Role, error) {
		if err := validateRoles([]Role{Role(s)}); err != nil {
			return "", err
		}
		return Role(s), nil
	})
}

// MarshalText formats s as "proto/port".
func (s Service) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText parses what ParseService reads.
func (s *Service) UnmarshalText(b []byte) error { return unmarshal(s, b, ParseService) }

// MarshalText formats d as "LISTENPORT=ADDR:PORT".
func (d DNAT) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText parses what ParseDNAT reads.
func (d *DNAT) UnmarshalText(b []byte) error { return unmarshal(d, b, ParseDNAT) }

// MarshalText formats r as "LO-HI", or "" when it is unset.
func (r PortRange) MarshalText() ([]byte, error) {
	if r.IsZero() {
		return []byte{}, nil
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses what ParsePortRange reads, or "" for unset.
func (r *PortRange) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = PortRange{}
		return nil
	}
	return unmarshal(r, b, ParsePortRange)
}

// MarshalText formats r as "N/UNIT", or "" when it is unset.
func (r Rate) MarshalText() ([]byte, error) {
	if r.IsZero() {
		return []byte{}, nil
	}
	return []byte(r.String()), nil
}

// UnmarshalText parses what ParseRate reads, or "" for unset.
func (r *Rate) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*r = Rate{}
		return nil
	}
	return unmarshal(r, b, ParseRate)
}

// unmarshal sets *v to parse(b), or leaves it when parse fails.
func unmarshal[T any](v *T, b []byte, parse func(string) (T, error)) error {
	x, err := parse(string(b))
	if err != nil {
		return err
	}
	*v = x
	return nil
}

// text is r as MarshalText writes it: "LO-HI", or "" when unset.
func (r PortRange) text() string {
	b, _ := r.MarshalText()
	return string(b)
}

// text is r as MarshalText writes it: "N/UNIT", or "" when unset.
func (r Rate) text() string {
	b, _ := r.MarshalText()
	return string(b)
}
