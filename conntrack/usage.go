package conntrack

import (
	"context"
	"fmt"
)

// Usage is how much of the conntrack tables a namespace uses, and what its
// control connections are doing.
type Usage struct {
	// Entries and MaxEntries: connections tracked, and the limit
	// (nf_conntrack_max).
	Entries    uint32 `json:"entries"`
	MaxEntries uint32 `json:"max_entries"`
	// Expectations counts the live expectations, of every helper.
	Expectations int `json:"expectations"`
	// Controls are the control connections: those that carry the helper
	// (of WithHelper, "ftp" by default), by original tuple.
	Controls []Tuple `json:"controls"`
	// Quiet are the control connections that have neither a live
	// expectation nor a data connection now: idle sessions, or sessions
	// whose PASV/PORT the helper could not turn into an expectation (a
	// NATed address, FTPS).
	Quiet []Tuple `json:"quiet"`
}

// ReadUsage reads the namespace's conntrack usage: the global counters, the
// expectations, and every tracked connection (to find the control
// connections and the data connections they led to).
func ReadUsage(ctx context.Context, opts ...Option) (Usage, error) {
	o := collect(opts)
	k, err := open(o)
	if err != nil {
		return Usage{}, err
	}
	defer k.close()
	var u Usage
	if u.Entries, u.MaxEntries, err = k.stats(); err != nil {
		return u, &Error{Op: "read conntrack statistics", Err: unsupported(err)}
	}
	busy := map[Tuple]bool{} // control connections with an expectation or data connection
	if err := each(ctx, k, "", func(x Expectation) {
		u.Expectations++
		busy[x.Master] = true
	}); err != nil {
		return u, err
	}
	flows, err := k.flows()
	if err != nil {
		return u, &Error{Op: "list connections", Err: unsupported(err)}
	}
	for _, f := range flows {
		if f.related {
			busy[f.master] = true
		}
	}
	u.Controls, u.Quiet = []Tuple{}, []Tuple{}
	for _, f := range flows {
		if f.helper != "" && keeps(o.helper, f.helper) {
			u.Controls = append(u.Controls, f.orig)
			if !busy[f.orig] {
				u.Quiet = append(u.Quiet, f.orig)
			}
		}
	}
	return u, nil
}

// flow is what ReadUsage needs of a tracked connection.
type flow struct {
	orig    Tuple
	proto   uint8  // of the original tuple
	zone    uint16 // conntrack zone
	helper  string
	related bool  // an expected connection (IPS_EXPECTED)
	master  Tuple // of a related connection
	// Packets and bytes each way, when conntrack counts them
	// (nf_conntrack_acct=1).
	packetsOrig, bytesOrig, packetsReply, bytesReply uint64
}

// String formats the usage as one line for people.
func (u Usage) String() string {
	return fmt.Sprintf("%d of %d connections tracked, %d expectations, %d control connections (%d quiet)",
		u.Entries, u.MaxEntries, u.Expectations, len(u.Controls), len(u.Quiet))
}

// Entries returns how many connections conntrack tracks in the namespace
// and how many it may (nf_conntrack_max), from the kernel's counters,
// without listing them.
func Entries(ctx context.Context, opts ...Option) (entries, limit uint32, err error) {
	k, err := open(collect(opts))
	if err != nil {
		return 0, 0, err
	}
	defer k.close()
	if entries, limit, err = k.stats(); err != nil {
		return 0, 0, &Error{Op: "read conntrack statistics", Err: unsupported(err)}
	}
	return entries, limit, nil
}
