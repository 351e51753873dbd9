package helper

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/ftpnft/ftpnft/internal/input"
)

// Spec describes one kernel conntrack helper as nftables uses it.
type Spec struct {
	// Kernel is the helper's name inside the kernel, used both for the
	// "type" of a ct helper object and for the "ct helper" match.
	Kernel string
	// Protocol is the layer 4 protocol of the control connection.
	Protocol string
	// DefaultPort is the well-known control port.
	DefaultPort uint16
	// NAT names the companion that rewrites addresses in the control
	// channel when the control connection is NATed.
	NAT string
	// Module is the kernel module (or built-in) that implements it.
	Module string
}

// FTP returns the kernel's FTP helper. (A function, so that no importer
// can change what ftpnft builds.)
func FTP() Spec {
	return Spec{
		Kernel:      "ftp",
		Protocol:    "tcp",
		DefaultPort: 21,
		NAT:         "nf_nat_ftp",
		Module:      "nf_conntrack_ftp",
	}
}

// ParsePort parses one TCP or UDP port number, 1 to 65535. The error
// names the bad value.
func ParsePort(s string) (uint16, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, fmt.Errorf("port %s: empty", input.Quote(s))
	}
	n, err := strconv.ParseUint(t, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("port %s: not a number", input.Quote(s))
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s: out of range 1-65535", input.Quote(s))
	}
	return uint16(n), nil
}

// ParsePorts parses a comma-separated list of ports such as "21,2121".
// Duplicates and empty items are errors, so that a typo is not silently
// accepted. The order is kept.
func ParsePorts(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("ports %s: empty list", input.Quote(s))
	}
	var ports []uint16
	seen := map[uint16]bool{}
	for _, item := range strings.Split(s, ",") {
		p, err := ParsePort(item)
		if err != nil {
			return nil, fmt.Errorf("ports %s: %w", input.Quote(s), err)
		}
		if seen[p] {
			return nil, fmt.Errorf("ports %s: port %d listed twice", input.Quote(s), p)
		}
		seen[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}
