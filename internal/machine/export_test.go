package machine

// Limits the external tests check the parser keeps; the tests are external (package machine_test)
// so that they judge files with the real executors (internal/executor/kinds imports this package).
const (
	MaxProblems = maxProblems
	MaxMessage  = maxMessage
)
