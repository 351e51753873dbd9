package helper

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParsePorts(t *testing.T) {
	tests := []struct {
		in      string
		want    []uint16
		wantErr string
	}{
		{in: "21", want: []uint16{21}},
		{in: "21,2121", want: []uint16{21, 2121}},
		{in: " 21 , 990 ", want: []uint16{21, 990}},
		{in: "65535", want: []uint16{65535}},
		{in: "", wantErr: `ports "": empty list`},
		{in: "0", wantErr: `port "0": out of range 1-65535`},
		{in: "65536", wantErr: `port "65536": out of range`},
		{in: "ftp", wantErr: `port "ftp": not a number`},
		{in: "21,", wantErr: `port "": empty`},
		{in: "21,,22", wantErr: `port "": empty`},
		{in: "-1", wantErr: `port "-1": not a number`},
		{in: "21,21", wantErr: `port 21 listed twice`},
	}
	for _, tt := range tests {
		got, err := ParsePorts(tt.in)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("ParsePorts(%q) error = %v, want it to contain %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParsePorts(%q): %v", tt.in, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParsePorts(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestProbe(t *testing.T) {
	root := t.TempDir()
	c, err := Probe(root)
	if err != nil || c.Available {
		t.Fatalf("Probe(empty) = %+v, %v; want unavailable, nil", c, err)
	}

	params := filepath.Join(root, "sys", "module", "nf_conntrack_ftp", "parameters")
	if err := os.MkdirAll(params, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"ports": "21,2121\n", "loose": "Y\n"} {
		if err := os.WriteFile(filepath.Join(params, name), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	sysctl := filepath.Join(root, "proc", "sys", "net", "netfilter")
	if err := os.MkdirAll(sysctl, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(sysctl, "nf_conntrack_helper"), []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err = Probe(root)
	if err != nil {
		t.Fatal(err)
	}
	want := Capability{Available: true, Ports: "21,2121", Loose: true, AutoAssign: true}
	if c != want {
		t.Fatalf("Probe = %+v, want %+v", c, want)
	}
}
