package settings

import (
	"errors"
	"time"
)

// Reading reads a function's declared settings and collects every problem on the way, so that a
// start that fails names all of them at once instead of one per attempt.
type Reading struct {
	d        *Declared
	problems []error
}

// Reading starts reading d's settings.
func (d *Declared) Reading() *Reading { return &Reading{d: d} }

// Int reads name into *dst (Declared.Int), noting a refused value.
func (r *Reading) Int(dst *int, name string, def int) {
	var err error
	*dst, err = r.d.Int(name, def)
	r.Problem(err)
}

// Duration reads name into *dst (Declared.Duration), noting a refused value.
func (r *Reading) Duration(dst *time.Duration, name string, def time.Duration) {
	var err error
	*dst, err = r.d.Duration(name, def)
	r.Problem(err)
}

// Problem notes err, unless it is nil.
func (r *Reading) Problem(err error) {
	if err != nil {
		r.problems = append(r.problems, err)
	}
}

// Err returns every problem noted, joined, or nil when there was none.
func (r *Reading) Err() error { return errors.Join(r.problems...) }
