package nft

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/ftpnft/ftpnft/helper"
	"github.com/ftpnft/ftpnft/internal/input"
)

// DefaultTable is the name of the table ftpnft manages unless told otherwise.
const DefaultTable = "ftpnft"

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
	// Block lists networks whose packets are dropped before anything else
	// in ftpnft's policy chains (input, forward), for every role, from
	// interval sets: a blocklist such as FireHOL's or Spamhaus DROP.
	Block []netip.Prefix
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
		Ports:        []uint16{helper.FTP().DefaultPort},
		Roles:        []Role{RoleServer},
		Policy:       PolicyDrop,
		RelatedPorts: DefaultRelatedPorts(),
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
		return &RoleError{What: fmt.Sprintf("dnat %s: forwarding needs role router", c.DNAT[0]), Needs: []Role{RoleRouter}}
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
			return fmt.Errorf("dnat %s: listen port %d is also a control port of this host's FTP server (role server); forward another port or drop it from the control ports", d, d.ListenPort)
		}
	}
	if len(c.Masquerade) > 0 && !c.Has(RoleRouter) {
		return &RoleError{What: fmt.Sprintf("masquerade %s: source NAT needs role router", c.Masquerade[0]), Needs: []Role{RoleRouter}}
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
			return &RoleError{What: fmt.Sprintf("passive ports %s: a passive range is opened on this host's server", c.PassivePorts), Needs: []Role{RoleServer}}
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
	for _, p := range c.Block {
		if err := validateSource(p); err != nil {
			return fmt.Errorf("block: %w", err)
		}
	}
	if c.hardened() && !c.Has(RoleServer) && !c.Has(RoleRouter) {
		return &RoleError{What: "sources, connection limits and rates apply to control connections this host accepts or forwards", Needs: []Role{RoleServer, RoleRouter}}
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
// order: loopback; the blocklist; a control port (role server), which then decides alone
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
	if slices.ContainsFunc(c.Block, func(p netip.Prefix) bool { return p.Contains(src) }) {
		return false
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

// RoleError reports a configuration that asks for something that needs a
// role it does not have.
type RoleError struct {
	What  string // what needs the role, e.g. "dnat 21=192.0.2.10:21: forwarding needs role router"
	Needs []Role // one of these roles would do
}

func (e *RoleError) Error() string { return fmt.Sprintf("%s (add role %s)", e.What, e.Roles()) }

// Roles names the roles that would do: "server or router".
func (e *RoleError) Roles() string {
	names := make([]string, len(e.Needs))
	for i, r := range e.Needs {
		names[i] = string(r)
	}
	return strings.Join(names, " or ")
}
