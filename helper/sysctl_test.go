package helper

import (
	"os"
	"testing"
)

// The caller's own namespace, by path and by "": the same values, and the
// thread that read them is not the caller's.
func TestReadSysctls(t *testing.T) {
	own, err := ReadSysctls("")
	if err != nil {
		t.Fatal(err)
	}
	if own.ExpectMax == "" || own.Syncookies == "" {
		t.Skipf("this kernel shows no conntrack sysctls: %+v", own)
	}
	if os.Geteuid() != 0 {
		t.Skip("entering a namespace needs CAP_SYS_ADMIN")
	}
	viaPath, err := ReadSysctls("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	if viaPath.ExpectMax != own.ExpectMax || viaPath.Syncookies != own.Syncookies {
		t.Fatalf("by path %+v, own %+v", viaPath, own)
	}
	if _, err := ReadSysctls(t.TempDir() + "/nope"); err == nil {
		t.Fatal("a missing namespace read without error")
	}
}

// iptables-legacy's tables are listed per namespace; the caller's own, in a
// fresh test namespace, has none or some, but reading never fails.
func TestLegacyTables(t *testing.T) {
	if _, err := LegacyTables(""); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 {
		t.Skip("entering a namespace needs CAP_SYS_ADMIN")
	}
	if _, err := LegacyTables("/proc/self/ns/net"); err != nil {
		t.Fatal(err)
	}
}
