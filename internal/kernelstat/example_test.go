package kernelstat_test

import (
	"fmt"
	"strings"

	"github.com/internode/internode/internal/kernelstat"
)

func ExampleParseSoftnet() {
	const softnetStat = `0000a000 00000000 00000002 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
00000f00 00000001 00000003 00000000 00000000 00000000 00000000 00000000 00000000 00000000 00000000
`
	processed, dropped, squeezed, err := kernelstat.ParseSoftnet(strings.NewReader(softnetStat))
	fmt.Println(processed, dropped, squeezed, err)
	// Output: 44800 1 5 <nil>
}

func ExampleParseNetstat() {
	const netstat = "TcpExt: PruneCalled RcvPruned OfoPruned TCPRcvCollapsed\nTcpExt: 12 10 0 3440\n"
	counters, err := kernelstat.ParseNetstat(strings.NewReader(netstat))
	fmt.Println(counters["TcpExt:RcvPruned"], counters["TcpExt:TCPRcvCollapsed"], err)
	// Output: 10 3440 <nil>
}
