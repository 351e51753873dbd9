package helper

import (
	"net/netip"
	"strings"
	"testing"
)

// What PASV, EPSV, PORT and EPRT announce, and the malformed lines that
// announce nothing.
func TestParseDataAddresses(t *testing.T) {
	server := netip.MustParseAddr("2001:db8::1")
	for rep, want := range map[string]string{
		"227 Entering Passive Mode (192,0,2,1,4,1)":       "192.0.2.1:1025",
		"227 Entering Passive Mode (192,0,2,1,4,1).":      "192.0.2.1:1025",
		"227 Entering Passive Mode 192,0,2,1,4,1.":        "192.0.2.1:1025",
		"227 Entering Passive Mode 192,0,2,1,4":           "",
		"227 Entering Passive Mode":                       "",
		"229 Entering Extended Passive Mode (|||50000|)":  "[2001:db8::1]:50000",
		"227 Entering Passive Mode (192,0,2,1,4)":         "",
		"227 Entering Passive Mode (192,0,2,256,4,1)":     "",
		"229 Entering Extended Passive Mode (|||0|)":      "",
		"229 Entering Extended Passive Mode (||1.2.3.4|)": "",
		"229 Entering Extended Passive Mode 50000":        "",
	} {
		got, err := ParsePassive(rep, server)
		if want == "" {
			if err == nil {
				t.Errorf("ParsePassive(%q) = %v, want an error", rep, got)
			}
		} else if err != nil || got.String() != want {
			t.Errorf("ParsePassive(%q) = %v, %v; want %s", rep, got, err, want)
		}
	}
	for arg, want := range map[string]string{
		"PORT 192,0,2,7,195,80":       "192.0.2.7:50000",
		"EPRT |1|192.0.2.7|50000|":    "192.0.2.7:50000",
		"EPRT |2|2001:db8::7|50000|":  "[2001:db8::7]:50000",
		"EPRT |2|192.0.2.7|50000|":    "",
		"EPRT |2|fe80::1%eth0|50000|": "",
		"EPRT |1|192.0.2.7|0|":        "",
		"PORT 192,0,2,7,0,0":          "",
		"PORT 192,0,2,7,195":          "",
		"PORT 192,0,2,7,195,x":        "",
	} {
		verb, rest, _ := strings.Cut(arg, " ")
		got, err := ParseActive(verb, rest)
		if want == "" {
			if err == nil {
				t.Errorf("ParseActive(%q) = %v, want an error", arg, got)
			}
		} else if err != nil || got.String() != want {
			t.Errorf("ParseActive(%q) = %v, %v; want %s", arg, got, err, want)
		}
	}
}
