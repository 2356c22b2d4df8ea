//go:build race

package plugin_test

// raceEnabled runs the toy module's tests with -race when these are, so
// they reuse the build cache of this run.
const raceEnabled = true
