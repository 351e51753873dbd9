package helper

import (
	"fmt"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/netns"
)

// Sysctls are the network sysctls that decide whether FTP works through a
// stateful firewall, as one network namespace has them. A value the kernel
// does not have is "".
type Sysctls struct {
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
	{"net/netfilter/nf_conntrack_expect_max", func(s *Sysctls) *string { return &s.ExpectMax }},
	{"net/netfilter/nf_conntrack_acct", func(s *Sysctls) *string { return &s.Acct }},
	{"net/ipv4/tcp_syncookies", func(s *Sysctls) *string { return &s.Syncookies }},
	{"net/ipv4/conf/all/rp_filter", func(s *Sysctls) *string { return &s.RPFilter }},
	{"net/ipv4/ip_forward", func(s *Sysctls) *string { return &s.Forward4 }},
	{"net/ipv6/conf/all/forwarding", func(s *Sysctls) *string { return &s.Forward6 }},
}

// ReadSysctls reads the sysctls of the network namespace at netnsPath, or
// of the caller's own when it is "".
func ReadSysctls(netnsPath string) (Sysctls, error) {
	var s Sysctls
	err := inNetNS(netnsPath, func() (err error) {
		s, err = readSysctls()
		return err
	})
	return s, err
}

// LegacyTables lists the tables of iptables-legacy (x_tables) in use in
// the network namespace at netnsPath (or the caller's, for ""), such as
// "ip filter": their chains run at the same hooks as nftables' base chains,
// and their rules are no nftables rules. iptables-nft's tables are not
// among them. The kernel lists them in /proc/net/{ip,ip6,arp}_tables_names
// of each namespace.
func LegacyTables(netnsPath string) ([]string, error) {
	var out []string
	err := inNetNS(netnsPath, func() error {
		for _, f := range []struct{ family, file string }{{"ip", "ip_tables_names"}, {"ip6", "ip6_tables_names"}, {"arp", "arp_tables_names"}} {
			names, err := readValue(filepath.Join("/proc/thread-self/net", f.file), "legacy tables")
			if err != nil {
				return err
			}
			for _, n := range strings.Fields(names) {
				out = append(out, f.family+" "+n)
			}
		}
		return nil
	})
	return out, err
}

// inNetNS runs f in the network namespace at netnsPath, or at once for
// "": /proc/sys/net and /proc/thread-self/net show the namespace of the
// thread that opens a file, so f runs on a goroutine whose thread enters
// the namespace and is never returned to Go's pool (it ends with the
// goroutine); the caller's thread never changes namespace.
func inNetNS(netnsPath string, f func() error) error {
	if netnsPath == "" {
		return f()
	}
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread ends with this goroutine
		ns, err := netns.Open(netnsPath)
		if err != nil {
			done <- err
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- fmt.Errorf("enter network namespace %s: %w", netnsPath, err)
			return
		}
		done <- f()
	}()
	return <-done
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
