"""A small NetworkPolicy evaluator: may this pod open a connection to that one, on this port?

It follows the semantics of networking.k8s.io/v1 (https://kubernetes.io/docs/concepts/services-
networking/network-policies/): a pod selected by no policy of a direction is open in that
direction; once selected, a connection must match a rule of some policy that selects it. Egress
is checked at the source, ingress at the destination, and both must allow. Enough for our
manifests: matchLabels/matchExpressions, namespace and pod selectors, ipBlock, numbered and named
ports with endPort.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

Obj = dict[str, Any]


@dataclass(frozen=True)
class Endpoint:
    """A pod (namespace and labels) or, with `ip`, an address outside the cluster."""

    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    named_ports: Mapping[str, int] = field(default_factory=dict)
    ip: str | None = None


def allowed(
    objs: list[Obj], src: Endpoint, dst: Endpoint, port: int, protocol: str = "TCP"
) -> bool:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    namespaces = {
        o["metadata"]["name"]: o["metadata"].get("labels", {})
        for o in objs
        if o["kind"] == "Namespace"
    }
    check = _Check(namespaces, dst, port, protocol)
    return check.direction(policies, "Egress", src, dst) and check.direction(
        policies, "Ingress", dst, src
    )


@dataclass(frozen=True)
class _Check:
    namespaces: Mapping[str, Mapping[str, str]]
    dst: Endpoint
    port: int
    protocol: str

    def direction(self, policies: list[Obj], kind: str, subject: Endpoint, peer: Endpoint) -> bool:
        if subject.ip is not None:
            return True  # outside the cluster: no policy applies there
        selecting = [
            p
            for p in policies
            if p["metadata"]["namespace"] == subject.namespace
            and kind in p["spec"].get("policyTypes", ["Ingress"])
            and matches(p["spec"]["podSelector"], subject.labels)
        ]
        if not selecting:
            return True
        rules_key, peers_key = ("egress", "to") if kind == "Egress" else ("ingress", "from")
        return any(
            self._rule(rule, peers_key, p["metadata"]["namespace"], peer)
            for p in selecting
            for rule in p["spec"].get(rules_key, [])
        )

    def _rule(self, rule: Obj, peers_key: str, policy_ns: str, peer: Endpoint) -> bool:
        peers = rule.get(peers_key) or []
        if peers and not any(self._peer(p, policy_ns, peer) for p in peers):
            return False
        ports = rule.get("ports") or []
        return not ports or any(self._port(p) for p in ports)

    def _peer(self, selector: Obj, policy_ns: str, peer: Endpoint) -> bool:
        if "ipBlock" in selector:
            return peer.ip is not None and _in_block(peer.ip, selector["ipBlock"])
        if peer.ip is not None:
            return False
        if "namespaceSelector" in selector:
            ns_labels = {
                "kubernetes.io/metadata.name": peer.namespace,
                **self.namespaces.get(peer.namespace, {}),
            }
            in_namespace = matches(selector["namespaceSelector"], ns_labels)
        else:
            in_namespace = peer.namespace == policy_ns
        return in_namespace and matches(selector.get("podSelector", {}), peer.labels)

    def _port(self, rule_port: Obj) -> bool:
        if rule_port.get("protocol", "TCP") != self.protocol:
            return False
        port = rule_port.get("port")
        if port is None:
            return True
        number: int | None = self.dst.named_ports.get(port) if isinstance(port, str) else port
        if number is None:
            return False
        return number <= self.port <= int(rule_port.get("endPort", number))


def matches(selector: Obj, labels: Mapping[str, str]) -> bool:
    """Label selector semantics; the empty selector matches everything."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        ok = {
            "In": present and labels.get(key) in (values or []),
            "NotIn": not present or labels.get(key) not in (values or []),
            "Exists": present,
            "DoesNotExist": not present,
        }[operator]
        if not ok:
            return False
    return True


def _in_block(ip: str, block: Obj) -> bool:
    address = ipaddress.ip_address(ip)
    if address not in ipaddress.ip_network(block["cidr"]):
        return False
    return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
