#!/usr/bin/python3
"""A small grpcurl for machines that have only Debian's packages: it learns a server's API through
gRPC server reflection (no .proto files at hand), then lists, describes and calls it.

Needs python3-grpcio, python3-protobuf, and reflection stubs generated with Debian's protoc from
Debian's grpc-proto package (see docs/api.md):

    grpc_reflect.py HOST:PORT list                        services the server carries
    grpc_reflect.py HOST:PORT describe SYMBOL             a service, message or enum, as descriptor text
    grpc_reflect.py HOST:PORT call SERVICE/METHOD [JSON]  unary or server-streaming call; JSON in and out

A failed call prints its status and the google.rpc.Status details (ErrorInfo), decoded with the types
the server itself serves, and exits 1.
"""
import json
import sys

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

import reflection_pb2
import reflection_pb2_grpc


class Reflector:
    def __init__(self, channel):
        self.stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        self.pool = descriptor_pool.DescriptorPool()
        self.files = {}  # name -> FileDescriptorProto received from the server
        self.added = set()

    def ask(self, **request):
        reply = next(self.stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**request)])))
        if reply.HasField("error_response"):
            sys.exit(f"reflection: {reply.error_response.error_message}")
        return reply

    def _receive(self, reply):
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            f = descriptor_pb2.FileDescriptorProto.FromString(raw)
            self.files.setdefault(f.name, f)

    def _add(self, name):
        """Adds a file to the pool after its imports, asking the server for any it did not send."""
        if name in self.added:
            return
        if name not in self.files:
            self._receive(self.ask(file_by_filename=name))
        f = self.files[name]
        for dep in f.dependency:
            self._add(dep)
        self.pool.Add(f)
        self.added.add(name)

    def load(self, symbol):
        """Makes SYMBOL (a service, method or message) and everything it needs known to the pool."""
        reply = self.ask(file_containing_symbol=symbol)
        self._receive(reply)
        for raw in reply.file_descriptor_response.file_descriptor_proto:
            self._add(descriptor_pb2.FileDescriptorProto.FromString(raw).name)

    def message_class(self, descriptor):
        if hasattr(message_factory, "GetMessageClass"):
            return message_factory.GetMessageClass(descriptor)
        return message_factory.MessageFactory(self.pool).GetPrototype(descriptor)


def describe(r, symbol):
    r.load(symbol)
    kinds = (
        (r.pool.FindServiceByName, descriptor_pb2.ServiceDescriptorProto),
        (r.pool.FindMessageTypeByName, descriptor_pb2.DescriptorProto),
        (r.pool.FindEnumTypeByName, descriptor_pb2.EnumDescriptorProto),
    )
    for find, proto_class in kinds:
        try:
            d = find(symbol)
        except KeyError:
            continue
        proto = proto_class()
        d.CopyToProto(proto)
        print(f"{symbol} (in {d.file.name}):")
        print(proto, end="")
        return
    sys.exit(f"{symbol}: not a service, message or enum")


def failure(r, err):
    print(f"code: {err.code().name}", file=sys.stderr)
    print(f"message: {err.details()}", file=sys.stderr)
    for key, value in err.trailing_metadata() or ():
        if key == "grpc-status-details-bin":
            r.load("google.rpc.Status")
            r.load("google.rpc.ErrorInfo")  # the detail's type, resolved through reflection too
            status = r.message_class(r.pool.FindMessageTypeByName("google.rpc.Status")).FromString(value)
            print("details: " + json_format.MessageToJson(status, descriptor_pool=r.pool, indent=None), file=sys.stderr)
    sys.exit(1)


def call(r, channel, target, body):
    service, _, method_name = target.partition("/")
    r.load(service)
    method = r.pool.FindServiceByName(service).FindMethodByName(method_name)
    if method is None or method.client_streaming:
        sys.exit(f"{target}: not a unary or server-streaming method of {service}")
    request_class = r.message_class(method.input_type)
    response_class = r.message_class(method.output_type)
    request = json_format.Parse(body, request_class(), descriptor_pool=r.pool)
    path = f"/{service}/{method_name}"
    kind = channel.unary_stream if method.server_streaming else channel.unary_unary
    stub = kind(path, request_serializer=lambda m: m.SerializeToString(), response_deserializer=response_class.FromString)
    try:
        replies = stub(request, timeout=30) if not method.server_streaming else stub(request)
        for reply in [replies] if not method.server_streaming else replies:
            print(json_format.MessageToJson(reply, descriptor_pool=r.pool, indent=None))
            sys.stdout.flush()
    except grpc.RpcError as err:
        failure(r, err)


def main(argv):
    if len(argv) < 3 or argv[2] not in ("list", "describe", "call"):
        sys.exit(__doc__)
    with grpc.insecure_channel(argv[1]) as channel:
        r = Reflector(channel)
        if argv[2] == "list":
            for s in r.ask(list_services="*").list_services_response.service:
                print(s.name)
        elif argv[2] == "describe":
            describe(r, argv[3])
        else:
            call(r, channel, argv[3], argv[4] if len(argv) > 4 else "{}")


if __name__ == "__main__":
    main(sys.argv)
