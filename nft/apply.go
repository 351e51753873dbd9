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
	// Repaired is true when the table had been changed since ftpnft wrote
	// it (by hand, or by another program): flushed, rules added or
	// deleted.
	Repaired bool
	// Plan is what was sent; an empty plan when nothing was.
	Plan *Plan
	// StateErr is why the address sets applied could not be recorded in
	// the state directory ([WithStateDir]); the next change of a large
	// set then reads the set back from the kernel first.
	StateErr error
}

// Apply makes the kernel hold rs, as one atomic netlink batch, and sends
// only the difference ([Plan]): a table that exists is changed in place,
// and what does not change keeps its handles, counters and run-time state
// (connection counts, rate meters); a failure anywhere leaves the kernel as
// it was. When the kernel already holds exactly rs, Apply sends nothing: a
// re-install whose table's stamp proves it unchanged reads no set element
// at all. A table of ftpnft's that was changed by hand is repaired the same
// way ([Result.Repaired]). A table of the same name that ftpnft did not
// create is never touched: the error wraps [ErrNotOwned].
//
// To change a large address set by difference, Apply needs to know what
// the kernel holds: it reads the set back (a million elements take the
// kernel a minute to list) unless [WithStateDir] recorded the sets it last
// applied and the table's stamp proves that the kernel still holds them.
func Apply(ctx context.Context, rs *Ruleset, opts ...Option) (Result, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return Result{}, err
	}
	defer release()
	fp := rs.fingerprint()
	if ok, err := c.stamped(rs.Table, fp); err != nil || ok {
		if ok {
			return Result{Plan: &Plan{Table: rs.Table}, StateErr: c.remember(rs, fp)}, nil
		}
		return Result{}, err
	}
	var res Result
	err = c.transact("install", rs.Table, c.candidates(rs.Table, rs), func(cur *installed, b *batch) (bool, error) {
		st := stamp(fp, nextGeneration(b.gen))
		p := newPlan(cur, rs, fp, st)
		res = Result{Plan: p} // a view from an earlier attempt no longer counts
		if p.Empty() {
			return false, nil
		}
		// Only this batch can have left this stamp: it names the
		// generation the batch's commit leads to.
		b.applied = func(c *conn) (bool, error) {
			udata, _, err := c.stampRuleOf(rs.Table)
			return bytes.Equal(udata, stampRuleData(st)), err
		}
		res.Changed, res.Repaired = true, p.Repair
		for _, s := range p.steps {
			if err := s.send(b); err != nil {
				return false, err
			}
		}
		return true, nil
	})
	if err != nil {
		return Result{}, err
	}
	res.StateErr = c.remember(rs, fp)
	return res, nil
}

// PlanApply returns what [Apply] would send to make the kernel hold rs now,
// and sends nothing: for dry runs. The plan holds for the ruleset's current
// generation; Apply plans again for its own.
func PlanApply(ctx context.Context, rs *Ruleset, opts ...Option) (*Plan, error) {
	c, release, err := connect(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer release()
	fp := rs.fingerprint()
	if ok, err := c.stamped(rs.Table, fp); err != nil || ok {
		return &Plan{Table: rs.Table}, err
	}
	var p *Plan
	err = c.transact("plan", rs.Table, c.candidates(rs.Table, rs), func(cur *installed, b *batch) (bool, error) {
		p = newPlan(cur, rs, fp, stamp(fp, nextGeneration(b.gen)))
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return p, nil
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
	c.ownershipOnly = true
	err = c.transact("uninstall", table, nil, func(cur *installed, b *batch) (bool, error) {
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
	// A record left behind is harmless: no stamp proves it.
	_ = c.forget(table)
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
// ftpnft did not create is never planned for. The candidates are rulesets
// whose address sets the kernel may hold (read).
func (c *conn) transact(op, table string, candidates []candidate, plan func(cur *installed, b *batch) (send bool, err error)) error {
	return c.retry(op, table, func() error { return c.attempt(op, table, candidates, plan) })
}

// retry runs attempt again while it returns errChanged (another writer
// committed between its read and its batch), at most maxAttempts times.
func (c *conn) retry(op, table string, attempt func() error) error {
	for n := 1; ; n++ {
		if err := c.ctx.Err(); err != nil {
			return &Error{Op: op, Table: table, Err: err}
		}
		err := attempt()
		if !errors.Is(err, errChanged) {
			return err
		}
		if n == maxAttempts {
			return &Error{Op: op, Table: table, Err: ErrConcurrent}
		}
	}
}

// unchanged returns errChanged when the ruleset's generation is no longer
// gen: a decision taken on what was read at gen is not to be trusted.
func (c *conn) unchanged(gen uint32) error {
	if now, err := c.generation(); err != nil {
		return err
	} else if now != gen {
		return errChanged
	}
	return nil
}

// attempt is one round of transact. A decision taken without a batch (the
// table is foreign, nothing needs sending, or reading failed) is only
// trusted when the generation did not move during the read: a table
// deleted halfway through the read would otherwise look foreign or absent.
func (c *conn) attempt(op, table string, candidates []candidate, plan func(cur *installed, b *batch) (bool, error)) error {
	gen, err := c.generation()
	if err != nil {
		return err
	}
	cur, err := read(c, table, false, gen, candidates...)
	if err != nil {
		return cmp.Or(c.unchanged(gen), err)
	}
	if cur != nil && !cur.Owned {
		return cmp.Or(c.unchanged(gen), error(&Error{Op: op, Table: table, Err: ErrNotOwned}))
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
		return c.unchanged(gen)
	}
	return c.commit(op, table, b)
}
