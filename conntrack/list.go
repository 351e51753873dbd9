package conntrack

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// List returns the live expectations of the namespace, of helper "ftp"
// unless [WithHelper] says otherwise, IPv4 and IPv6, ordered by master and
// expected tuple.
// Ending ctx ends the dump.
func List(ctx context.Context, opts ...Option) ([]Expectation, error) {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return nil, err
	}
	defer k.close()
	out := []Expectation{}
	if err := each(ctx, k, o.helper, func(x Expectation) { out = append(out, x) }); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Expectation) int {
		if c := strings.Compare(a.Helper, b.Helper); c != 0 {
			return c
		}
		if c := a.Master.compare(b.Master); c != 0 {
			return c
		}
		return a.Expected.compare(b.Expected)
	})
	return out, nil
}

// each dumps the expectations that k holds and hands those of helper (""
// keeps all) to fn one at a time, in the kernel's order, as their messages
// arrive.
func each(ctx context.Context, k ctnetlink, helper string, fn func(Expectation)) error {
	req := netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK_EXP<<8 | ipctnlMsgExpGet),
			Flags: netlink.Request | netlink.Dump,
		},
		// nfgenmsg: AF_UNSPEC dumps IPv4 and IPv6.
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	}
	var derr error
	err := k.dump(ctx, req, func(m netlink.Message) bool {
		switch m.Header.Type {
		case netlink.Done, netlink.Error:
			// Both carry an error code: the request's, or that of a dump
			// that failed part way.
			if code, ok := nlio.Errno(m); code != 0 {
				derr = code
			} else if !ok && m.Header.Type == netlink.Error {
				derr = errMalformed
			}
			return true
		}
		x, err := decodeExpectation(m.Data)
		if err != nil {
			derr = err
			return true
		}
		if keeps(helper, x.Helper) {
			fn(x)
		}
		return false
	})
	if err == nil {
		err = derr
	}
	var e *Error
	if err != nil && !errors.As(err, &e) {
		err = &Error{Op: "list expectations", Err: unsupported(err)}
	}
	return err
}

// keeps reports whether the helper filter ("" for all) admits helper name.
func keeps(filter, name string) bool { return filter == "" || name == filter }

// key identifies an expectation across events and dumps.
func key(e Expectation) expKey {
	return expKey{e.Helper, e.Master, e.Expected}
}

// expKey identifies an expectation: its helper, master and expected tuple.
type expKey struct {
	helper           string
	master, expected Tuple
}
