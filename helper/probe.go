package helper

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Capability is what the running kernel says about the FTP helper.
type Capability struct {
	// Available reports whether nf_conntrack_ftp is loaded or built in.
	Available bool `json:"available"`
	// Ports is the module's "ports" parameter: the ports for which the
	// kernel registered the helper ("21" by default). With explicit
	// assignment by ftpnft any port works; the list matters only for
	// helper names such as "ftp-2121" that the kernel registers.
	Ports string `json:"ports,omitempty"`
	// Loose is the module's "loose" parameter. When true the helper
	// accepts PORT/PASV addresses that differ from the control
	// connection's peer, which allows FTP bounce-style expectations.
	Loose bool `json:"loose"`
	// AutoAssign reports whether the kernel assigns helpers by port
	// itself (sysctl net.netfilter.nf_conntrack_helper=1, removed in Linux
	// 6.0): then every connection to Ports gets the helper, whatever the
	// firewall's rules say.
	AutoAssign bool `json:"auto_assign"`
}

// Probe reads the FTP helper's state below root (normally "/"): the
// module's parameters in /sys and the automatic assignment sysctl in
// /proc (of the caller's network namespace). A missing module directory is
// not an error: it yields Available false.
func Probe(root string) (Capability, error) {
	var c Capability
	auto, err := readValue(filepath.Join(root, "proc", "sys", "net", "netfilter", "nf_conntrack_helper"), "nf_conntrack_helper sysctl")
	if err != nil {
		return c, err
	}
	c.AutoAssign = auto == "1"
	dir := filepath.Join(root, "sys", "module", FTP().Module)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("probe %s: %w", dir, err)
	}
	c.Available = true
	ports, err := readValue(filepath.Join(dir, "parameters", "ports"), FTP().Module+" parameter ports")
	if err != nil {
		return c, err
	}
	c.Ports = ports
	loose, err := readValue(filepath.Join(dir, "parameters", "loose"), FTP().Module+" parameter loose")
	if err != nil {
		return c, err
	}
	c.Loose = loose == "Y" || loose == "1"
	return c, nil
}

// readValue returns the trimmed content of a sysctl or module parameter
// file, or "" when the kernel does not expose it; what names it in errors.
func readValue(path, what string) (string, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("probe %s: %w", what, err)
	}
	return strings.TrimSpace(string(b)), nil
}
