#!/usr/bin/env python3
"""A small Lethe client: stubs are generated from proto/ with grpcio-tools on first use.

    python examples/python/lethe_client.py --addr 127.0.0.1:50051 info
    python examples/python/lethe_client.py generate --chat "What is the capital of France?"
    python examples/python/lethe_client.py generate --stream --max-new-tokens 64 "Once upon a time"
    python examples/python/lethe_client.py check "some text to test against the forget list"

Every command prints one JSON object (the last message of a stream, with the full text).
"""
import argparse
import json
import pathlib
import sys

HERE = pathlib.Path(__file__).resolve().parent
PROTO_ROOT = HERE.parent.parent / "proto"
STUBS = HERE / "generated"


def load_stubs():
    """Generates the Python stubs from the .proto files when they are missing or older."""
    protos = sorted(PROTO_ROOT.glob("lethe/v1/*.proto"))
    newest = max(p.stat().st_mtime for p in protos)
    marker = STUBS / "lethe" / "v1" / "inference_pb2_grpc.py"
    if not marker.exists() or marker.stat().st_mtime < newest:
        from grpc_tools import protoc

        STUBS.mkdir(exist_ok=True)
        args = ["protoc", f"-I{PROTO_ROOT}", f"--python_out={STUBS}", f"--grpc_python_out={STUBS}"]
        if protoc.main(args + [str(p) for p in protos]) != 0:
            sys.exit("generating the gRPC stubs failed")
    sys.path.insert(0, str(STUBS))
    from lethe.v1 import inference_pb2, inference_pb2_grpc

    return inference_pb2, inference_pb2_grpc


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--addr", default="127.0.0.1:50051", help="server address (host:port)")
    parser.add_argument("--timeout", type=float, default=120.0, help="deadline in seconds")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="generate a completion")
    gen.add_argument("text")
    gen.add_argument("--chat", action="store_true", help="send the text as a user message")
    gen.add_argument("--system", help="with --chat: a system message before the user's")
    gen.add_argument("--stream", action="store_true", help="use GenerateStream")
    gen.add_argument("--max-new-tokens", type=int, default=64)
    gen.add_argument("--temperature", type=float, default=0.0)
    gen.add_argument("--seed", type=int)
    chk = sub.add_parser("check", help="check text against the active forget list")
    chk.add_argument("text")
    sub.add_parser("info", help="describe the served model")
    args = parser.parse_args()

    import grpc
    from google.protobuf.json_format import MessageToDict

    pb, pb_grpc = load_stubs()
    stub = pb_grpc.InferenceStub(grpc.insecure_channel(args.addr))
    as_dict = lambda m: MessageToDict(m, preserving_proto_field_name=True)
    try:
        if args.command == "info":
            out = as_dict(stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=args.timeout))
        elif args.command == "check":
            out = as_dict(stub.Check(pb.CheckRequest(text=args.text), timeout=args.timeout))
        else:
            req = pb.GenerateRequest(max_new_tokens=args.max_new_tokens, temperature=args.temperature)
            if args.seed is not None:
                req.seed = args.seed
            if args.chat and args.system:
                req.messages.append(pb.ChatMessage(role="system", content=args.system))
            if args.chat:
                req.messages.append(pb.ChatMessage(role="user", content=args.text))
            else:
                req.prompt = args.text
            if args.stream:
                text, last = "", None
                for msg in stub.GenerateStream(req, timeout=args.timeout):
                    text += msg.text
                    last = msg
                out = as_dict(last)
                out["text"] = text
            else:
                out = as_dict(stub.Generate(req, timeout=args.timeout))
    except grpc.RpcError as err:
        print(json.dumps({"error": err.code().name, "message": err.details()}))
        sys.exit(1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
