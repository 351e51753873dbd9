//go:build netns

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// ftpnftBin is the ftpnft binary built from this tree for the tests, so they
// drive the CLI exactly as a user does.
var ftpnftBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ftpnft-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	ftpnftBin = filepath.Join(dir, "ftpnft")
	// The commands record what they applied here, not in the host's
	// /var/lib/ftpnft.
	os.Setenv("FTPNFT_STATE_DIR", filepath.Join(dir, "state"))
	build := exec.Command("go", "build", "-o", ftpnftBin, "../cmd/ftpnft")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static, as README builds it
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ftpnft:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
