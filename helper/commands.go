package helper

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The control channel's lines that name a data connection: what the
// helper reads to create an expectation.

// ParseActive parses the argument of the client's PORT (h1,h2,h3,h4,p1,p2)
// or EPRT (|af|address|port|) command (verb "PORT" or "EPRT"): the data
// connection it announces, as the helper reads it to expect one.
func ParseActive(verb, arg string) (netip.AddrPort, error) {
	if verb == "PORT" {
		f := strings.Split(arg, ",")
		var b [6]byte
		if len(f) != 6 {
			return netip.AddrPort{}, fmt.Errorf("PORT %q: want h1,h2,h3,h4,p1,p2", arg)
		}
		for i, v := range f {
			n, err := strconv.ParseUint(v, 10, 8)
			if err != nil {
				return netip.AddrPort{}, fmt.Errorf("PORT %q: %q is not a byte", arg, v)
			}
			b[i] = byte(n)
		}
		port := uint16(b[4])<<8 | uint16(b[5])
		if port == 0 {
			return netip.AddrPort{}, fmt.Errorf("PORT %q: port 0", arg)
		}
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b[:4])), port), nil
	}
	f := strings.Split(arg, "|")
	if len(f) != 5 || f[0] != "" || f[4] != "" || (f[1] != "1" && f[1] != "2") {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: want |1|ipv4|port| or |2|ipv6|port|", arg)
	}
	a, err := netip.ParseAddr(f[2])
	if err != nil || a.Is4() != (f[1] == "1") || a.Zone() != "" {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: bad address %q for family %s", arg, f[2], f[1])
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("EPRT %q: bad port %q", arg, f[3])
	}
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// ParsePassive parses the address in the server's 227 reply to PASV,
// "(h1,h2,h3,h4,p1,p2)", or the port in a 229 reply to EPSV, "(|||port|)",
// which is on the control connection's server address: the data connection
// it announces, as the helper reads it. A 227 reply without parentheses
// gives its numbers from the first digit on, as some servers write it.
func ParsePassive(rep string, server netip.Addr) (netip.AddrPort, error) {
	in, ok := passiveArg(rep)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("passive reply %q: no address in parentheses", rep)
	}
	if strings.HasPrefix(rep, "227") {
		ap, err := ParseActive("PORT", in)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("passive reply %q: %w", rep, err)
		}
		return ap, nil
	}
	f := strings.Split(in, "|")
	if len(f) != 5 || f[0]+f[1]+f[2]+f[4] != "" {
		return netip.AddrPort{}, fmt.Errorf("passive reply %q: want (|||port|)", rep)
	}
	port, err := strconv.ParseUint(f[3], 10, 16)
	if err != nil || port == 0 {
		return netip.AddrPort{}, fmt.Errorf("passive reply %q: bad port %q", rep, f[3])
	}
	return netip.AddrPortFrom(server, uint16(port)), nil
}

// passiveArg returns what stands between a passive reply's parentheses,
// or for a 227 reply without them, the run of digits and commas from its
// first digit.
func passiveArg(rep string) (string, bool) {
	lp, rp := strings.IndexByte(rep, '('), strings.LastIndexByte(rep, ')')
	if lp >= 0 && rp > lp {
		return rep[lp+1 : rp], true
	}
	if lp >= 0 || !strings.HasPrefix(rep, "227 ") {
		return "", false
	}
	from := strings.IndexAny(rep[4:], "0123456789")
	if from < 0 {
		return "", false
	}
	in := rep[4+from:]
	if end := strings.IndexFunc(in, func(r rune) bool { return r != ',' && (r < '0' || r > '9') }); end >= 0 {
		in = in[:end]
	}
	return in, true
}
