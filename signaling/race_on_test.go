//go:build race

package signaling

// raceEnabled: the race detector slows JSON handling about tenfold.
const raceEnabled = true
