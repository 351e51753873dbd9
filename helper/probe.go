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
}

// Probe reads the FTP helper's state below sysfsRoot (normally "/sys").
// A missing module directory is not an error: it yields Available false.
func Probe(sysfsRoot string) (Capability, error) {
	dir := filepath.Join(sysfsRoot, "module", FTP.Module)
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Capability{}, nil
		}
		return Capability{}, fmt.Errorf("probe %s: %w", dir, err)
	}
	c := Capability{Available: true}
	ports, err := readParam(dir, "ports")
	if err != nil {
		return c, err
	}
	c.Ports = ports
	loose, err := readParam(dir, "loose")
	if err != nil {
		return c, err
	}
	c.Loose = loose == "Y" || loose == "1"
	return c, nil
}

// readParam returns a module parameter's value, or "" when the kernel does
// not expose it.
func readParam(moduleDir, name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(moduleDir, "parameters", name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("probe %s parameter %s: %w", FTP.Module, name, err)
	}
	return strings.TrimSpace(string(b)), nil
}
