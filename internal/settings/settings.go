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
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("%s=%q: want a whole number ≥ 1", name, v)
	}
	return n, nil
}

// Duration returns the environment variable name as a non-negative Go duration ("500ms", "20s"),
// or def when it is unset or empty. Anything else is an error naming the variable.
func Duration(name string, def time.Duration) (time.Duration, error) {
	v := os.Getenv(name)
	if v == "" {
		return def, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%s=%q: want a duration such as 500ms or 20s", name, v)
	}
	return d, nil
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
