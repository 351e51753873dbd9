package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// The shipped example renders exactly what the same flags render.
func TestExampleConfig(t *testing.T) {
	code, fromFile, stderr := runCLI("render", "--config", "../../examples/ftpnft.yaml")
	if code != exitOK {
		t.Fatalf("render --config examples/ftpnft.yaml: exit %d: %s", code, stderr)
	}
	code, fromFlags, stderr := runCLI("render", "--table", "ftpnft", "--role", "server", "--ports", "21,2121",
		"--policy", "drop", "--allow", "tcp/22", "--related-ports", "1024-65535", "--source", "192.0.2.0/24",
		"--source", "2001:db8::/32", "--max-conn-per-source", "10", "--conn-rate", "30/minute")
	if code != exitOK || fromFile != fromFlags {
		t.Fatalf("config and flags differ (exit %d, %s):\n--- config\n%s\n--- flags\n%s", code, stderr, fromFile, fromFlags)
	}
}

func TestConfigOverridesAndPaths(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "partners.txt", "198.51.100.0/24 # partner\n")
	cfg := writeFile(t, dir, "c.yaml", "ports: 2121\nsource-file: [partners.txt]\nallow: [tcp/22, udp/53]\n")
	_, out, stderr := runCLI("render", "--config", cfg)
	for _, want := range []string{"tcp dport 2121 ct state new", "elements = { 198.51.100.0/24 }", "allow udp/53"} {
		if !strings.Contains(out, want) {
			t.Errorf("render lacks %q (stderr %q):\n%s", want, stderr, out)
		}
	}
	// Flags win; a list flag replaces the file's list.
	_, out, _ = runCLI("render", "--config", cfg, "--ports", "21", "--allow", "tcp/2222")
	if !strings.Contains(out, "tcp dport 21 ct state new") || strings.Contains(out, "2121") ||
		!strings.Contains(out, "allow tcp/2222") || strings.Contains(out, "allow tcp/22\"") || strings.Contains(out, "udp/53") {
		t.Errorf("command-line flags did not override the file:\n%s", out)
	}
	// uninstall has no --ports: the key is ignored, not an error.
	code, _, stderr := runCLI("uninstall", "--config", writeFile(t, dir, "u.yaml", "ports: [21]\nnetns: /nonexistent/ns\n"))
	if code != exitUsage || !strings.Contains(stderr, `netns "/nonexistent/ns"`) {
		t.Errorf("uninstall --config: exit %d, %q; want the file's netns to be used", code, stderr)
	}
	// An empty file is an empty configuration.
	if code, _, stderr := runCLI("render", "--config", writeFile(t, dir, "empty.yaml", "")); code != exitOK {
		t.Errorf("empty config: exit %d: %s", code, stderr)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"ports: [21]\nprot: 2\n", `c.yaml:2: key "prot": unknown key`},
		{"ports: 21\nports: 22\n", `c.yaml:2: key "ports": repeats line 1`},
		{"policy: [drop]\n", `c.yaml:1: key "policy": takes one value, not a list`},
		{"allow:\n  - {tcp: 22}\n", `c.yaml:2: key "allow": list items must be plain values`},
		{"dnat: {21: x}\n", `c.yaml:1: key "dnat": want a value or a list of values`},
		{"- ports\n", "c.yaml:1: want a mapping"},
		{"ports: [21\n", "c.yaml: yaml:"},
		{"max-conn-per-source: lots\n", `c.yaml:1: key "max-conn-per-source": invalid value "lots"`},
		{"ports: [0]\n", `port "0": out of range`},
		{"role: [server, gateway]\n", `role "gateway"`},
		{"table: x; flush ruleset\n", `table "x; flush ruleset"`},
		{"force: true\n", `key "force": unknown key`},
	} {
		path := writeFile(t, dir, "c.yaml", tt.content)
		code, stdout, stderr := runCLI("install", "--config", path)
		if code != exitUsage || stdout != "" || !strings.Contains(stderr, tt.want) {
			t.Errorf("config %q: exit %d, stderr %q; want exit 2 and %q", tt.content, code, stderr, tt.want)
		}
	}
	if code, _, stderr := runCLI("render", "--config", filepath.Join(dir, "missing.yaml")); code != exitUsage || !strings.Contains(stderr, "missing.yaml") {
		t.Errorf("missing config: exit %d, %q", code, stderr)
	}
}
