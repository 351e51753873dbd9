package helper

import (
	"strconv"
	"strings"
	"testing"
)

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"21", "21,2121", "21,,22", "0", "65536", " 21 ", "21,21", "+21", "0x15"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(s)
		if err != nil {
			if !strings.Contains(err.Error(), "port") {
				t.Fatalf("ParsePorts(%q) error %q does not say what is wrong", s, err)
			}
			return
		}
		parts := make([]string, len(ports))
		seen := map[uint16]bool{}
		for i, p := range ports {
			if p == 0 || seen[p] {
				t.Fatalf("ParsePorts(%q) = %v: zero or repeated port", s, ports)
			}
			seen[p] = true
			parts[i] = strconv.Itoa(int(p))
		}
		if back, err := ParsePorts(strings.Join(parts, ",")); err != nil || len(back) != len(ports) {
			t.Fatalf("ParsePorts(%q) = %v; parses back to %v, %v", s, ports, back, err)
		}
	})
}
