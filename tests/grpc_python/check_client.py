"""An Envoy ext_authz client that is not tonic: Python grpcio, with the
CheckRequest/CheckResponse messages of the published Envoy API
(envoy-data-plane). Run by tests/grpc.rs against `keygate serve
--grpc-listen`:

    python3 check_client.py ADDR READER_TOKEN BAD_TOKEN...

It asserts what it can check alone (status codes, the HTTP answer inside
denied_response, byte-identical invalid_token answers on the wire) and
prints one JSON object with what it saw, for the Rust test to compare
with the key records.
"""

import json
import sys

import betterproto2
import grpc
from envoy_data_plane.envoy.config.core.v3 import Address, SocketAddress
from envoy_data_plane.envoy.service.auth.v3 import (
    AttributeContext,
    AttributeContextHttpRequest,
    AttributeContextPeer,
    AttributeContextRequest,
    AuthorizationSyncStub,
    CheckRequest,
    CheckResponse,
)

CHECK = "/envoy.service.auth.v3.Authorization/Check"


def request(method, path, headers, source="203.0.113.5"):
    return CheckRequest(
        attributes=AttributeContext(
            source=AttributeContextPeer(
                address=Address(socket_address=SocketAddress(address=source))
            ),
            request=AttributeContextRequest(
                http=AttributeContextHttpRequest(
                    method=method, path=path, headers=headers
                )
            ),
        )
    )


def headers_of(options):
    return {o.header.key: o.header.value for o in options}


def verdict(response):
    name, value = betterproto2.which_one_of(response, "http_response")
    if name == "ok_response":
        return {
            "code": response.status.code,
            "set": headers_of(value.headers),
            "remove": list(value.headers_to_remove),
        }
    assert name == "denied_response", name
    return {
        "code": response.status.code,
        "message": response.status.message,
        "http": int(value.status.code),
        "headers": headers_of(value.headers),
        "body": json.loads(value.body),
    }


def main():
    addr, reader, bad = sys.argv[1], sys.argv[2], sys.argv[3:]
    with grpc.insecure_channel(addr) as channel:
        stub = AuthorizationSyncStub(channel)
        # The same RPC, answered as raw bytes: the wire form itself.
        raw = channel.unary_unary(
            CHECK,
            request_serializer=CheckRequest.SerializeToString,
            response_deserializer=None,
        )
        seen = {}
        bearer = {"authorization": "Bearer " + reader}
        seen["allow"] = verdict(stub.check(request("POST", "/demo.Greeter/SayHello", bearer)))
        assert seen["allow"]["code"] == 0, seen["allow"]
        assert seen["allow"]["remove"] == ["authorization"], seen["allow"]

        seen["scope"] = verdict(stub.check(request("POST", "/demo.Greeter/SayGoodbye", bearer)))
        assert (seen["scope"]["code"], seen["scope"]["http"]) == (7, 403), seen["scope"]
        assert seen["scope"]["body"]["error"] == "insufficient_scope", seen["scope"]

        seen["missing"] = verdict(stub.check(request("GET", "/api/x", {})))
        assert (seen["missing"]["code"], seen["missing"]["http"]) == (16, 401), seen["missing"]
        assert seen["missing"]["body"]["error"] == "missing_token", seen["missing"]
        assert seen["missing"]["headers"]["www-authenticate"] == 'Bearer realm="keygate"'

        answers = [
            raw(request("GET", "/api/x", {"authorization": "Bearer " + token}))
            for token in bad
        ]
        assert len(answers) >= 2
        assert all(a == answers[0] for a in answers), "invalid_token answers differ on the wire"
        seen["invalid"] = verdict(CheckResponse.FromString(answers[0]))
        assert (seen["invalid"]["code"], seen["invalid"]["http"]) == (16, 401), seen["invalid"]
        assert seen["invalid"]["body"]["error"] == "invalid_token", seen["invalid"]
        seen["invalid_wire_bytes"] = len(answers[0])
    print(json.dumps(seen, sort_keys=True))


if __name__ == "__main__":
    main()
