// Package settings reads the functions' configuration from environment variables, with defaults
// and error messages that name the variable, so both functions read their settings the same way.
package settings

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"
)

// Or returns the value of the environment variable name, or def when it is unset or empty.
func Or(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// Int returns the environment variable name as a whole number ≥ 1, or def when it is unset or
// empty. Anything else is an error naming the variable.
func Int(name string, def int) (int, error) {
	return parsed(name, def, "a whole number ≥ 1", func(v string) (int, bool) {
		n, err := strconv.Atoi(v)
		return n, err == nil && n >= 1
	})
}

// Duration returns the environment variable name as a non-negative Go duration ("500ms", "20s"),
// or def when it is unset or empty. Anything else is an error naming the variable.
func Duration(name string, def time.Duration) (time.Duration, error) {
	return parsed(name, def, "a duration such as 500ms or 20s", func(v string) (time.Duration, bool) {
		d, err := time.ParseDuration(v)
		return d, err == nil && d >= 0
	})
}

// parsed returns the environment variable name read by parse, or def when it is unset or empty; a
// value parse does not accept is an error naming the variable, its value and what was wanted.
func parsed[T any](name string, def T, want string, parse func(string) (T, bool)) (T, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	x, ok := parse(v)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%s=%q: want %s", name, v, want)
	}
	return x, nil
}

// LogLevel returns the level named by LOG_LEVEL (DEBUG, INFO, WARN, ERROR); INFO when it is unset
// or not a level, because a typo in a log setting must not stop a function from starting.
func LogLevel() slog.Level {
	var l slog.Level
	if err := l.UnmarshalText([]byte(Or("LOG_LEVEL", "INFO"))); err != nil {
		return slog.LevelInfo
	}
	return l
}
