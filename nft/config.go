package nft

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/ftpnft/ftpnft/helper"
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
	return "", fmt.Errorf("policy %q: want drop or accept", s)
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
		return Service{}, fmt.Errorf("service %q: want PROTO/PORT such as tcp/22", s)
	}
	if proto != "tcp" && proto != "udp" {
		return Service{}, fmt.Errorf("service %q: protocol %q: want tcp or udp", s, proto)
	}
	p, err := helper.ParsePort(port)
	if err != nil {
		return Service{}, fmt.Errorf("service %q: %w", s, err)
	}
	return Service{Protocol: proto, Port: p}, nil
}

// Config is what the user asks for. The zero value is not valid: start from
// [DefaultConfig].
type Config struct {
	// Table is the name of ftpnft's own table in family inet.
	Table string
	// Ports are the FTP control ports that get the helper.
	Ports []uint16
	// Policy is the input chain's policy.
	Policy Policy
	// Allow lists extra services the input chain admits.
	Allow []Service
}

// DefaultConfig returns the configuration of a plain FTP server on port 21
// behind a drop policy.
func DefaultConfig() Config {
	return Config{
		Table:  DefaultTable,
		Ports:  []uint16{helper.FTP.DefaultPort},
		Policy: PolicyDrop,
	}
}

// tableName is what nft accepts as an identifier (and what is safe to print
// unquoted in a ruleset): a letter, then letters, digits, '_', '-' or '.'.
var tableName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_.-]{0,254}$`)

// Validate reports the first problem with c, naming the bad value. It makes
// no netlink traffic.
func (c Config) Validate() error {
	if !tableName.MatchString(c.Table) {
		return fmt.Errorf("table %q: want a letter followed by letters, digits, '_', '-' or '.' (at most 255)", c.Table)
	}
	if nftKeywords[c.Table] {
		return fmt.Errorf("table %q: an nft keyword cannot name a table; choose another name", c.Table)
	}
	if len(c.Ports) == 0 {
		return fmt.Errorf("ports: at least one FTP control port is needed")
	}
	seen := map[uint16]bool{}
	for _, p := range c.Ports {
		if p == 0 {
			return fmt.Errorf("port 0: out of range 1-65535")
		}
		if seen[p] {
			return fmt.Errorf("port %d listed twice", p)
		}
		seen[p] = true
	}
	if _, err := ParsePolicy(string(c.Policy)); err != nil {
		return err
	}
	seenSvc := map[Service]bool{}
	for _, s := range c.Allow {
		if _, err := ParseService(s.String()); err != nil {
			return err
		}
		if seenSvc[s] {
			return fmt.Errorf("service %s allowed twice", s)
		}
		seenSvc[s] = true
	}
	return nil
}
