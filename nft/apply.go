package nft

import (
	"bytes"
	"cmp"
	"context"
	"errors"

	"github.com/google/nftables"
)

// Result says what Apply did.
type Result struct {
	// Changed is false when the kernel already held the desired ruleset
	// and nothing was sent.
	Changed bool
	// Replaced is true when an earlier ftpnft table was replaced.
	Replaced bool
	// Repaired is true when the table replaced had been changed since
	// ftpnft wrote it (by hand, or by another program): flushed, rules
	// added or deleted.
	Repaired bool
}

// Apply makes the kernel hold rs, as one atomic netlink batch: when the table
// exists and was made by ftpnft it is deleted and created anew in the same
// batch, so a failure anywhere leaves the kernel as it was. When the kernel
// already holds exactly rs, Apply sends nothing. A table of ftpnft's that
// was changed by hand is replaced the same way ([Result.Repaired]). A table
// of the same name that ftpnft did not create is never touched: the error
// wraps [ErrNotOwned].
func Apply(ctx context.Context, rs *Ruleset, opts ...Option) (Result, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	defer release()
	fp := rs.fingerprint()
	if ok, err := c.stamped(rs.Table, fp); err != nil || ok {
		return Result{}, err
	}
	var res Result
	err = c.transact("install", rs.Table, func(cur *installed, b *batch) (bool, error) {
		res = Result{} // a view from an earlier attempt no longer counts
		if cur != nil && cur.fingerprint == fp {
			return false, nil
		}
		table := &nftables.Table{Family: nftables.TableFamilyINet, Name: rs.Table}
		if cur != nil {
			b.DelTable(table)
		}
		st := stamp(fp, nextGeneration(b.gen))
		if err := b.add(tableMessage(rs.Table, st)); err != nil {
			return false, err
		}
		// Only this batch can have left this stamp: it names the
		// generation the batch's commit leads to.
		b.applied = func(c *conn) (bool, error) {
			udata, found, err := c.table(rs.Table)
			return found && bytes.Equal(udata, st), err
		}
		res = Result{Changed: true, Replaced: cur != nil, Repaired: cur != nil && cur.modified()}
		return true, enqueue(b, rs, table)
	})
	if err != nil {
		return Result{}, err
	}
	return res, nil
}

// Remove deletes ftpnft's table and everything in it. Removing a table that
// does not exist succeeds with removed false. A table of that name that
// ftpnft did not create is left alone and the error wraps [ErrNotOwned].
func Remove(ctx context.Context, table string, opts ...Option) (removed bool, err error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return false, err
	}
	defer release()
	err = c.transact("uninstall", table, func(cur *installed, b *batch) (bool, error) {
		removed = cur != nil
		if cur != nil {
			b.DelTable(&nftables.Table{Family: nftables.TableFamilyINet, Name: table})
			b.applied = func(c *conn) (bool, error) {
				_, found, err := c.table(table)
				return !found, err
			}
		}
		return removed, nil
	})
	if err != nil {
		return false, err
	}
	return removed, nil
}

// maxAttempts bounds how often a transaction reads the ruleset again after
// another writer changed it.
const maxAttempts = 5

// errChanged is commit's signal that another writer got in between.
var errChanged = errors.New("ruleset changed")

// transact reads table at the ruleset's current generation, lets plan queue
// the changes on a batch (or decide that none are needed), and commits the
// batch only if the ruleset is still at that generation. When another writer
// committed in between, the kernel refuses the whole batch and transact reads
// again; after maxAttempts it gives up with ErrConcurrent. A table that
// ftpnft did not create is never planned for.
func (c *conn) transact(op, table string, plan func(cur *installed, b *batch) (send bool, err error)) error {
	for attempt := 1; ; attempt++ {
		if err := c.ctx.Err(); err != nil {
			return &Error{Op: op, Table: table, Err: err}
		}
		err := c.attempt(op, table, plan)
		if !errors.Is(err, errChanged) {
			return err
		}
		if attempt == maxAttempts {
			return &Error{Op: op, Table: table, Err: ErrConcurrent}
		}
	}
}

// attempt is one round of transact. A decision taken without a batch (the
// table is foreign, nothing needs sending, or reading failed) is only
// trusted when the generation did not move during the read: a table
// deleted halfway through the read would otherwise look foreign or absent.
func (c *conn) attempt(op, table string, plan func(cur *installed, b *batch) (bool, error)) error {
	gen, err := c.generation()
	if err != nil {
		return err
	}
	unchanged := func() error {
		if now, err := c.generation(); err != nil {
			return err
		} else if now != gen {
			return errChanged
		}
		return nil
	}
	cur, err := read(c, table, false, nil)
	if err != nil {
		return cmp.Or(unchanged(), err)
	}
	if cur != nil && !cur.Owned {
		return cmp.Or(unchanged(), error(&Error{Op: op, Table: table, Err: ErrNotOwned}))
	}
	b, err := newBatch()
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	b.gen = gen
	send, err := plan(cur, b)
	if err != nil {
		return &Error{Op: op, Table: table, Err: err}
	}
	if !send {
		return unchanged()
	}
	return c.commit(op, table, b)
}
