package memberlist

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain checks that the tests leave no goroutine behind. memberlist's
// Shutdown does not wait for a probe under way: its goroutine
// (probeNode) waits for the ack or for its timer, up to the probe
// interval (1 s in these tests), and one goleak.Find gives up after about
// 0.4 s of its own retries. So Find is called again until leakWait has
// passed: a goroutine that never ends still fails the check.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		err := goleak.Find()
		for deadline := time.Now().Add(leakWait); err != nil && time.Now().Before(deadline); {
			err = goleak.Find() // waits between its own tries
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "goleak: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// leakWait is how long TestMain waits for the tests' goroutines to end:
// three probe intervals of memberlist's LAN defaults.
const leakWait = 3 * time.Second
