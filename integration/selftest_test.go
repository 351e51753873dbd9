//go:build netns

package integration

import (
	"bufio"
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// peersLeft lists processes still running as selftest peers of this test's
// ftpnft binary.
func peersLeft() []int {
	return processesWhere(func(args []string) bool {
		return len(args) > 1 && args[0] == ftpnftBin && args[1] == "selftest-peer"
	})
}

// TestSelftest runs `ftpnft selftest`: every step observed, exit 0, the
// host's ruleset untouched, nothing left running.
func TestSelftest(t *testing.T) {
	RequireRoot(t)
	before, err := exec.Command("nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := ftpnft(t, "selftest")
	if code != 0 {
		t.Fatalf("selftest: exit %d\n%s\n%s", code, stdout, stderr)
	}
	for _, want := range []string{
		"passive IPv4 (PASV):", "active IPv4 (PORT):", "passive IPv6 (EPSV):", "active IPv6 (EPRT):",
		"helper assigned to the control connection", "expectation created:", "data connection admitted as RELATED:",
		"sha256 matches", "negative control", "passive data connection blocked", "no expectation created",
		"selftest passed: 21 steps observed",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("selftest output lacks %q", want)
		}
	}
	if strings.Contains(stdout, "[FAIL]") || strings.Count(stdout, "[ok]") != 21 {
		t.Errorf("selftest output:\n%s", stdout)
	}
	after, err := exec.Command("nft", "list", "ruleset").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatalf("selftest changed the host's ruleset:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if left := peersLeft(); len(left) > 0 {
		t.Fatalf("selftest left peers running: %v", left)
	}
}

// TestSelftestInterrupted sends SIGINT in the middle: the self-test ends
// promptly with exit 1 and removes its namespaces (its peers are gone).
func TestSelftestInterrupted(t *testing.T) {
	RequireRoot(t)
	cmd := exec.Command(ftpnftBin, "selftest")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	s := bufio.NewScanner(out)
	for s.Scan() {
		if strings.Contains(s.Text(), "ruleset installed") {
			break
		}
	}
	if left := peersLeft(); len(left) != 2 {
		t.Fatalf("want 2 peers running mid-test, found %v", left)
	}
	cmd.Process.Signal(syscall.SIGINT)
	done := make(chan error, 1)
	go func() {
		for s.Scan() {
		}
		done <- cmd.Wait()
	}()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(stderr.String(), "interrupted") {
			t.Fatalf("interrupted selftest: %v, stderr %q", err, stderr.String())
		}
	case <-time.After(5 * time.Second):
		t.Fatal("selftest still running 5s after SIGINT")
	}
	if left := peersLeft(); len(left) > 0 {
		t.Fatalf("interrupted selftest left peers running: %v", left)
	}
}
