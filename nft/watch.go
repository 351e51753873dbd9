package nft

import (
	"context"
	"encoding/binary"
	"errors"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/ftpnft/ftpnft/internal/nlio"
)

// A Commit is one batch committed to the namespace's ruleset, by anyone,
// as the kernel announces it to listeners (group NFNLGRP_NFTABLES): the
// messages of the batch, then NFT_MSG_NEWGEN with the new generation and
// the committing process.
type Commit struct {
	// Gen is the generation the batch led to.
	Gen uint32 `json:"gen"`
	// PID and Process name the process that committed the batch, such as
	// "nft" (nftables.service, a person), "firewalld", "iptables-nft".
	PID     uint32 `json:"pid"`
	Process string `json:"process"`
	// Touched reports that the batch created, changed or deleted
	// something of the watched table (or the table itself).
	Touched bool `json:"touched"`
	// Start is the first report of a watch: it listens from now on, and
	// anything may have been committed before.
	Start bool `json:"start,omitempty"`
	// Lost reports that announcements were lost (the socket's buffer
	// overflowed): anything may have been committed.
	Lost bool `json:"lost,omitempty"`
}

// WatchCommits reports each batch committed to the ruleset of the
// namespace to handle, beginning with a Commit whose Start is set once it
// listens, until ctx ends (then it returns nil) or the socket fails. Table
// names the inet table whose changes set Commit.Touched. handle runs on
// WatchCommits's goroutine; while it runs, announcements queue in the
// kernel. Waiting for them costs no CPU.
func WatchCommits(ctx context.Context, table string, handle func(Commit), opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	if o.dial != nil {
		return &Error{Op: "watch", Table: table, Err: errors.New("a test kernel does not announce commits")}
	}
	fd, _, release, err := o.netns.Open()
	if err != nil {
		return &Error{Op: "open netns", Err: err}
	}
	defer release()
	nc, err := nlio.DialNetfilter(fd)
	if err != nil {
		return &Error{Op: "watch", Table: table, Err: classify(err)}
	}
	defer nc.Close()
	if err := nc.SetReadBuffer(socketBuffer); err != nil {
		return &Error{Op: "watch", Table: table, Err: classify(err)}
	}
	if err := nc.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		return &Error{Op: "watch", Table: table, Err: classify(err)}
	}
	handle(Commit{Start: true})
	r := commitReader{table: table}
	err = nlio.Listen(ctx, nc, func(m netlink.Message) {
		if c, ok := r.take(m); ok {
			handle(c)
		}
	}, func() {
		// What was gathered of the batch in progress may be incomplete.
		r.cur = Commit{}
		handle(Commit{Lost: true, Touched: true})
	})
	if err != nil {
		return &Error{Op: "watch", Table: table, Err: classify(err)}
	}
	return nil
}

// commitReader gathers the announcements of one batch into a Commit.
type commitReader struct {
	table string // the inet table whose changes set Touched
	cur   Commit
}

// take reads one announcement; at the batch's end (NFT_MSG_NEWGEN) it
// returns the batch's Commit.
func (r *commitReader) take(m netlink.Message) (Commit, bool) {
	if uint16(m.Header.Type)>>8 != unix.NFNL_SUBSYS_NFTABLES || len(m.Data) < 4 {
		return Commit{}, false
	}
	if uint16(m.Header.Type)&0xff != unix.NFT_MSG_NEWGEN {
		// Every other announcement names its table first: NFTA_TABLE_NAME,
		// NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE, ... are 1.
		r.cur.Touched = r.cur.Touched || m.Data[0] == unix.NFPROTO_INET && nlio.StringAttr(m, 1) == r.table
		return Commit{}, false
	}
	c := r.cur
	r.cur = Commit{}
	if id := nlio.Attr(m, unix.NFTA_GEN_ID); len(id) == 4 {
		c.Gen = binary.BigEndian.Uint32(id)
	}
	if pid := nlio.Attr(m, unix.NFTA_GEN_PROC_PID); len(pid) == 4 {
		c.PID = binary.BigEndian.Uint32(pid)
	}
	c.Process = nlio.StringAttr(m, unix.NFTA_GEN_PROC_NAME)
	return c, true
}
