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

// DefaultTable is the name of the table ftpnft manages unless told otherwise.
const DefaultTable = "ftpnft"

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

// Roles are all roles, in the order ftpnft lists them.
var Roles = []Role{RoleServer, RoleClient, RoleRouter}

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
		if !slices.Contains(Roles, r) {
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
	ListenPort uint16         `json:"listen_port"`
	To         netip.AddrPort `json:"to"`
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
	Lo uint16 `json:"lo"`
	Hi uint16 `json:"hi"`
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
	N    uint64 `json:"n"`
	Unit string `json:"unit"` // "second" or "minute"
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
// blank lines and everything after '#' are ignored. Errors name the file
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
		line = strings.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		p, err := ParseSource(line)
		if err != nil {
			return nil, fmt.Errorf("source file %s:%d: %w", path, n, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// DefaultRelatedPorts are the ports related data connections may go to:
// the unprivileged ones. An FTP client or server never needs a data
// connection to a privileged port; an attacker who talks the helper into
// expecting one (FTP bounce, NAT slipstreaming) does.
var DefaultRelatedPorts = PortRange{1024, 65535}

// Config is what the user asks for. The zero value is not valid: start from
// [DefaultConfig].
type Config struct {
	// Table is the name of ftpnft's own table in family inet.
	Table string
	// Ports are the FTP control ports that get the helper.
	Ports []uint16
	// Roles say which chains ftpnft builds; at least one.
	Roles []Role
	// Policy is the policy of the input chain (roles server and client)
	// and of the forward chain (role router).
	Policy Policy
	// Allow lists extra services (destination ports) of this host that
	// the input chain admits. They are not forwarded.
	Allow []Service
	// DNAT forwards control connections to inner servers (role router).
	DNAT []DNAT
	// Masquerade lists the interfaces behind which inner clients are
	// hidden by source NAT (role router).
	Masquerade []string
	// RelatedPorts are the destination ports RELATED data connections
	// may use; [DefaultRelatedPorts] unless configured otherwise.
	RelatedPorts PortRange
	// PassivePorts, when set, opens this range for NEW connections to this
	// host (role server): for FTPS, whose encrypted control channel the
	// helper cannot read.
	PassivePorts PortRange
	// Sources, when not empty, are the only networks that may open control
	// connections (roles server and router). They are stored in interval
	// sets: one lookup per connection however many there are.
	Sources []netip.Prefix
	// MaxConnPerSource, when not 0, limits the concurrent control
	// connections of each source address; more are refused (TCP reset).
	MaxConnPerSource uint32
	// ConnRate, when set, limits the new control connections per source
	// address; the excess is dropped.
	ConnRate Rate
}

// hardened reports whether control connections go through the checks of
// the ftp-control chain.
func (c Config) hardened() bool {
	return len(c.Sources) > 0 || c.MaxConnPerSource > 0 || !c.ConnRate.IsZero()
}

// Has reports whether c includes role r.
func (c Config) Has(r Role) bool { return slices.Contains(c.Roles, r) }

// DefaultConfig returns the configuration of a plain FTP server on port 21
// behind a drop policy.
func DefaultConfig() Config {
	return Config{
		Table:        DefaultTable,
		Ports:        []uint16{helper.FTP.DefaultPort},
		Roles:        []Role{RoleServer},
		Policy:       PolicyDrop,
		RelatedPorts: DefaultRelatedPorts,
	}
}

// validTableName reports whether s is what nft accepts as an identifier
// (and what is safe to print unquoted in a ruleset): a letter, then up to
// 254 letters, digits, '_', '-' or '.'. (A regular expression with {0,254}
// compiles into 254 copies, which cost every run of ftpnft 0.7 ms.)
func validTableName(s string) bool {
	if len(s) == 0 || len(s) > 255 {
		return false
	}
	for i, r := range s {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '_' || r == '-' || r == '.')) {
			return false
		}
	}
	return true
}

// Limits of a configuration. Each control port, service, port forward and
// masquerade is a rule in one or more chains, and all of them go to the
// kernel in one batch whose answers must fit the socket's buffer: 12,000
// control ports overflowed it. These limits are far above any real FTP
// setup and far below that; a larger configuration is refused before
// anything is sent. (Sources are set elements, not rules: no limit here.)
const (
	MaxPorts      = 256
	MaxServices   = 1024
	MaxDNAT       = 256
	MaxMasquerade = 64
)

// Validate reports the first problem with c, naming the bad value. It makes
// no netlink traffic.
func (c Config) Validate() error {
	for _, l := range []struct {
		what string
		n    int
		max  int
	}{
		{"control ports", len(c.Ports), MaxPorts},
		{"allowed services", len(c.Allow), MaxServices},
		{"dnat forwards", len(c.DNAT), MaxDNAT},
		{"masquerade interfaces", len(c.Masquerade), MaxMasquerade},
	} {
		if l.n > l.max {
			return fmt.Errorf("%s: %d given, at most %d are supported", l.what, l.n, l.max)
		}
	}
	if !validTableName(c.Table) {
		return fmt.Errorf("table %s: want a letter followed by letters, digits, '_', '-' or '.' (at most 255)", input.Quote(c.Table))
	}
	if nftKeywords[c.Table] {
		return fmt.Errorf("table %s: an nft keyword cannot name a table; choose another name", input.Quote(c.Table))
	}
	if len(c.Ports) == 0 {
		return fmt.Errorf("ports: at least one FTP control port is needed")
	}
	if slices.Contains(c.Ports, 0) {
		return fmt.Errorf("port 0: out of range 1-65535")
	}
	if p, ok := firstDuplicate(c.Ports); ok {
		return fmt.Errorf("port %d listed twice", p)
	}
	if err := validateRoles(c.Roles); err != nil {
		return err
	}
	if _, err := ParsePolicy(string(c.Policy)); err != nil {
		return err
	}
	for _, s := range c.Allow {
		if _, err := ParseService(s.String()); err != nil {
			return err
		}
	}
	if s, ok := firstDuplicate(c.Allow); ok {
		return fmt.Errorf("service %s allowed twice", s)
	}
	if len(c.DNAT) > 0 && !c.Has(RoleRouter) {
		return fmt.Errorf("dnat %s: forwarding needs role router (add --role router)", c.DNAT[0])
	}
	type listen struct {
		v6   bool
		port uint16
	}
	seenListen := map[listen]DNAT{}
	for _, d := range c.DNAT {
		if err := d.validate(); err != nil {
			return err
		}
		l := listen{d.To.Addr().Is6(), d.ListenPort}
		if prev, ok := seenListen[l]; ok {
			return fmt.Errorf("dnat %s: listen port %d is already forwarded by dnat %s", d, d.ListenPort, prev)
		}
		seenListen[l] = d
		// DNAT runs before input: this host's own server would never
		// see its control port.
		if c.Has(RoleServer) && slices.Contains(c.Ports, d.ListenPort) {
			return fmt.Errorf("dnat %s: listen port %d is also a control port of this host's FTP server (role server); forward another port or drop it from --ports", d, d.ListenPort)
		}
	}
	if len(c.Masquerade) > 0 && !c.Has(RoleRouter) {
		return fmt.Errorf("masquerade %s: source NAT needs role router (add --role router)", c.Masquerade[0])
	}
	for _, m := range c.Masquerade {
		if _, err := ParseInterface(m); err != nil {
			return err
		}
	}
	if m, ok := firstDuplicate(c.Masquerade); ok {
		return fmt.Errorf("masquerade %s listed twice", m)
	}
	if err := c.RelatedPorts.validate("related ports"); err != nil {
		return err
	}
	if !c.PassivePorts.IsZero() {
		if err := c.PassivePorts.validate("passive ports"); err != nil {
			return err
		}
		if !c.Has(RoleServer) {
			return fmt.Errorf("passive ports %s: a passive range is opened on this host's server (add role server)", c.PassivePorts)
		}
		if c.PassivePorts.Lo < 1024 {
			return fmt.Errorf("passive ports %s: must be unprivileged (1024 or above)", c.PassivePorts)
		}
	}
	for _, p := range c.Sources {
		if err := validateSource(p); err != nil {
			return err
		}
	}
	if c.hardened() && !c.Has(RoleServer) && !c.Has(RoleRouter) {
		return fmt.Errorf("sources, connection limits and rates apply to control connections this host accepts or forwards (add role server or router)")
	}
	if !c.ConnRate.IsZero() {
		if err := c.ConnRate.validate(); err != nil {
			return err
		}
	}
	return nil
}

// AdmitsNew reports whether the input chain built from c admits a new TCP
// connection from src to port of this host, following the rules in their
// order: loopback; a control port (role server), which then decides alone
// by the source allowlist; the passive range (from allowed sources); an
// allowed service. Without an input chain (role router only) or under
// policy accept everything is admitted. Connection limits and rates are
// not considered: they depend on traffic.
func (c Config) AdmitsNew(src netip.Addr, port uint16) bool {
	if !c.Has(RoleServer) && !c.Has(RoleClient) || c.Policy == PolicyAccept {
		return true
	}
	src = src.WithZone("").Unmap()
	if src.IsLoopback() {
		return true
	}
	allowed := len(c.Sources) == 0 || slices.ContainsFunc(c.Sources, func(p netip.Prefix) bool { return p.Contains(src) })
	if c.Has(RoleServer) {
		if slices.Contains(c.Ports, port) {
			return allowed // the ftp-control chain drops or accepts: final
		}
		if !c.PassivePorts.IsZero() && c.PassivePorts.Lo <= port && port <= c.PassivePorts.Hi && allowed {
			return true
		}
	}
	return slices.Contains(c.Allow, Service{"tcp", port})
}
