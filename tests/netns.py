"""A private network for tests: network namespaces on one bridge, always removed afterwards.

``with Subnet(3) as net: net.address(0), net.exec_prefix(0)`` — root only (``ip netns``).
Names carry the test's pid, so concurrent runs and leftovers of a killed run never collide.
"""

import os
import subprocess


def ip(*args, check=True):
    """Run ``ip ARGS``; raise with ip's own message when it fails and ``check`` is set."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def free_third_octet():
    """A /24 in 10.77.0.0/16 that no interface here uses yet."""
    used = ip("-4", "-o", "addr")
    start = os.getpid() % 200
    for step in range(250):
        octet = (start + step) % 250 + 1
        if f" 10.77.{octet}." not in used:
            return octet
    raise RuntimeError("no free /24 in 10.77.0.0/16")


class Subnet:
    """``hosts`` namespaces with addresses 10.77.N.11, .12, ... on a bridge at 10.77.N.1."""

    def __init__(self, hosts):
        tag = f"fm{os.getpid() % 100000}"  # interface names: at most 15 characters
        self.bridge = f"{tag}br"
        self.namespaces = [f"{tag}ns{i}" for i in range(hosts)]
        self.veths = [f"{tag}v{i}" for i in range(hosts)]
        self.octet = None

    def address(self, index):
        return f"10.77.{self.octet}.{11 + index}"

    @property
    def gateway(self):
        return f"10.77.{self.octet}.1"

    def exec_prefix(self, index):
        """Prefix a command with this to run it inside host ``index``'s namespace."""
        return ["ip", "netns", "exec", self.namespaces[index]]

    def create(self):
        self.octet = free_third_octet()
        ip("link", "add", self.bridge, "type", "bridge")
        ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        ip("link", "set", self.bridge, "up")
        for index, (ns, veth) in enumerate(zip(self.namespaces, self.veths, strict=True)):
            ip("netns", "add", ns)
            ip("link", "add", veth, "type", "veth", "peer", "name", veth + "p")
            ip("link", "set", veth + "p", "netns", ns)
            ip("link", "set", veth, "master", self.bridge, "up")
            ip("-n", ns, "link", "set", veth + "p", "name", "eth0")
            ip("-n", ns, "addr", "add", f"{self.address(index)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            ip("-n", ns, "link", "set", "lo", "up")
        return self

    def remove(self):
        """Delete everything this subnet may have made; missing pieces are fine."""
        for ns in self.namespaces:
            ip("netns", "del", ns, check=False)  # takes its end of the veth pair with it
        for veth in self.veths:
            ip("link", "del", veth, check=False)
        ip("link", "del", self.bridge, check=False)

    def leftovers(self):
        """Names of this subnet's namespaces and links that still exist."""
        names = set(ip("netns", "list").split()) | set(ip("-o", "link").replace("@", ":").split())
        return sorted({self.bridge, *self.namespaces, *self.veths} & {n.strip(":") for n in names})

    def __enter__(self):
        try:
            return self.create()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc):
        self.remove()
