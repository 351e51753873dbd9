package helper

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Sysctls are the network sysctls that decide whether FTP works through a
// stateful firewall, as one network namespace has them. A value the kernel
// does not have is "".
type Sysctls struct {
	// ConntrackCount and ConntrackMax: tracked connections, and the limit.
	ConntrackCount string `json:"nf_conntrack_count"`
	ConntrackMax   string `json:"nf_conntrack_max"`
	// ExpectMax is the limit of conntrack expectations
	// (nf_conntrack_expect_max).
	ExpectMax string `json:"nf_conntrack_expect_max"`
	// Acct is nf_conntrack_acct: 1 counts packets and bytes per connection.
	Acct string `json:"nf_conntrack_acct"`
	// Syncookies is net.ipv4.tcp_syncookies.
	Syncookies string `json:"tcp_syncookies"`
	// RPFilter is net.ipv4.conf.all.rp_filter: 1 (strict) drops packets
	// that arrive on an interface other than the route back.
	RPFilter string `json:"rp_filter"`
	// Forward4 and Forward6: net.ipv4.ip_forward and
	// net.ipv6.conf.all.forwarding, which a router needs.
	Forward4 string `json:"ip_forward"`
	Forward6 string `json:"ipv6_forwarding"`
}

// sysctlFiles maps each field to its file under /proc/sys.
var sysctlFiles = []struct {
	file  string
	field func(*Sysctls) *string
}{
	{"net/netfilter/nf_conntrack_count", func(s *Sysctls) *string { return &s.ConntrackCount }},
	{"net/netfilter/nf_conntrack_max", func(s *Sysctls) *string { return &s.ConntrackMax }},
	{"net/netfilter/nf_conntrack_expect_max", func(s *Sysctls) *string { return &s.ExpectMax }},
	{"net/netfilter/nf_conntrack_acct", func(s *Sysctls) *string { return &s.Acct }},
	{"net/ipv4/tcp_syncookies", func(s *Sysctls) *string { return &s.Syncookies }},
	{"net/ipv4/conf/all/rp_filter", func(s *Sysctls) *string { return &s.RPFilter }},
	{"net/ipv4/ip_forward", func(s *Sysctls) *string { return &s.Forward4 }},
	{"net/ipv6/conf/all/forwarding", func(s *Sysctls) *string { return &s.Forward6 }},
}

// ReadSysctls reads the sysctls of the network namespace at netnsPath, or
// of the caller's own when it is "". /proc/sys/net shows the namespace of
// the thread that opens a file, so the files of another namespace are read
// by a goroutine on a thread of its own that enters the namespace; the
// thread is never returned to Go's pool (it ends with the goroutine), and
// the caller's thread never changes namespace.
func ReadSysctls(netnsPath string) (Sysctls, error) {
	if netnsPath == "" {
		return readSysctls()
	}
	type result struct {
		s   Sysctls
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		f, err := os.Open(netnsPath)
		if err != nil {
			done <- result{err: fmt.Errorf("read sysctls: %w", err)}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("read sysctls: enter %s: %w", netnsPath, err)}
			return
		}
		s, err := readSysctls()
		done <- result{s, err}
	}()
	r := <-done
	return r.s, r.err
}

func readSysctls() (Sysctls, error) {
	var s Sysctls
	for _, f := range sysctlFiles {
		v, err := readValue(filepath.Join("/proc/sys", f.file), "sysctl "+strings.ReplaceAll(f.file, "/", "."))
		if err != nil {
			return s, err
		}
		*f.field(&s) = v
	}
	return s, nil
}
