package main

import (
	"context"
	"fmt"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/encoding"
)

// rawCodec carries []byte messages as they are: no protobuf, no copy on
// marshal. gRPC copies the received bytes into a fresh slice before
// Unmarshal (codecV0Bridge.Unmarshal materializes them), so keeping data is
// safe.
type rawCodec struct{}

const rawCodecName = "bench-raw"

func init() { encoding.RegisterCodec(rawCodec{}) }

func (rawCodec) Name() string { return rawCodecName }

func (rawCodec) Marshal(v any) ([]byte, error) {
	switch b := v.(type) {
	case []byte:
		return b, nil
	case *[]byte:
		return *b, nil
	}
	return nil, fmt.Errorf("bench-raw codec: cannot marshal %T", v)
}

func (rawCodec) Unmarshal(data []byte, v any) error {
	b, ok := v.(*[]byte)
	if !ok {
		return fmt.Errorf("bench-raw codec: cannot unmarshal into %T", v)
	}
	*b = data
	return nil
}

// The bench service, defined by hand instead of with protoc:
//
//	service Bench {
//	  rpc Oneway(bytes) returns (bytes);               // one-way, empty reply
//	  rpc Echo(bytes) returns (bytes);                 // request/response
//	  rpc OnewayStream(stream bytes) returns (bytes);  // one-way messages
//	  rpc EchoStream(stream bytes) returns (stream bytes); // one reply per message, in order
//	}
const (
	grpcService      = "internode.bench.Bench"
	grpcOneway       = "/" + grpcService + "/Oneway"
	grpcEcho         = "/" + grpcService + "/Echo"
	grpcOnewayStream = "/" + grpcService + "/OnewayStream"
	grpcEchoStream   = "/" + grpcService + "/EchoStream"
	grpcMaxMessage   = 64 << 20 // room for the 16 MiB messages of the large scenario
)

// benchServer is the handler type checked by grpc.Server.RegisterService.
type benchServer interface {
	onMessage(payload []byte)
	echoDelay() time.Duration
}

var benchServiceDesc = grpc.ServiceDesc{
	ServiceName: grpcService,
	HandlerType: (*benchServer)(nil),
	Methods: []grpc.MethodDesc{
		{MethodName: "Oneway", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			srv.(benchServer).onMessage(in)
			return []byte(nil), nil
		}},
		{MethodName: "Echo", Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			var in []byte
			if err := dec(&in); err != nil {
				return nil, err
			}
			if d := srv.(benchServer).echoDelay(); d > 0 {
				time.Sleep(d)
			}
			return in, nil
		}},
	},
	Streams: []grpc.StreamDesc{
		{StreamName: "OnewayStream", ClientStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			for {
				var in []byte
				if err := stream.RecvMsg(&in); err != nil {
					return nil
				}
				srv.(benchServer).onMessage(in)
			}
		}},
		{StreamName: "EchoStream", ClientStreams: true, ServerStreams: true, Handler: func(srv any, stream grpc.ServerStream) error {
			for {
				var in []byte
				if err := stream.RecvMsg(&in); err != nil {
					return nil
				}
				if err := stream.SendMsg(in); err != nil {
					return err
				}
			}
		}},
	},
}

// grpcPair is a gRPC server and a client connection to it, in one process.
type grpcPair struct {
	hooks  Hooks
	server *grpc.Server
	conn   *grpc.ClientConn
	served sync.WaitGroup
}

func (p *grpcPair) onMessage(payload []byte) { p.hooks.OnMessage(payload) }
func (p *grpcPair) echoDelay() time.Duration { return p.hooks.EchoDelay }

func (p *grpcPair) start(h Hooks) error {
	p.hooks = h
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	p.server = grpc.NewServer(
		grpc.ForceServerCodec(rawCodec{}),
		grpc.MaxRecvMsgSize(grpcMaxMessage),
		grpc.MaxSendMsgSize(grpcMaxMessage),
	)
	p.server.RegisterService(&benchServiceDesc, p)
	p.served.Add(1)
	go func() {
		defer p.served.Done()
		_ = p.server.Serve(ln)
	}()
	p.conn, err = grpc.NewClient("passthrough:///"+ln.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(
			grpc.ForceCodec(rawCodec{}),
			grpc.MaxCallRecvMsgSize(grpcMaxMessage),
			grpc.MaxCallSendMsgSize(grpcMaxMessage),
		),
	)
	if err != nil {
		p.server.Stop()
		p.served.Wait()
		return err
	}
	p.conn.Connect()
	return nil
}

func (p *grpcPair) close() {
	if p.server == nil {
		return
	}
	p.conn.Close()
	p.server.Stop()
	p.served.Wait()
	p.server = nil
}
