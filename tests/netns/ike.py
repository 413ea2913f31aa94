"""strongSwan's charon in network namespaces, for the IKE tests: its
configuration (strongswan.conf, swanctl.conf, certificates made with
`pki`), starting it, and swanctl against it.

Each charon runs in the namespace of its gateway with a /run of its own
(charon's pid file is at a fixed path: two charons on one machine would
refuse each other), its vici socket and log in the test's directory."""

import pathlib
import shutil
import subprocess

from topology import wait_for

REPO = pathlib.Path(__file__).resolve().parents[2]
PLUGIN = pathlib.Path("/usr/lib/ipsec/plugins/libstrongswan-kernel-espgate.so")
CHARON = "/usr/lib/ipsec/charon"

# The plugins the far end's charon needs: crypto for IKE (openssl, gcm,
# kdf: 5.9.8 derives keys through kdf), certificates, the kernel interface
# (first: the first registered is the one charon uses), sockets, vici.
# Node A's charon runs on conf/ike/strongswan.conf.
BASE_PLUGINS = "random nonce kdf openssl aes sha1 sha2 hmac gcm pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519"

PSK = "0sZXNwZ2F0ZSBpa2UgdGVzdCBzaGFyZWQga2V5"


class Charon:
    """One charon: `side` names its files; `kernel` is `espgate` (on the
    shipped conf/ike/strongswan.conf, with the node's control socket
    `socket`) or `libipsec`."""

    def __init__(self, topo, ns, tmp, side, kernel, socket=None):
        self.topo, self.ns, self.side = topo, ns, side
        self.dir = tmp / f"charon-{side}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.vici = self.dir / "vici"
        self.log = self.dir / "charon.log"
        logging = f"""  filelog {{
    log {{
      path = {self.log}
      default = 1
      knl = 2
      ike = 1
      time_format = %T
      flush_line = yes
    }}
  }}"""
        if kernel == "espgate":
            # The shipped configuration, and what this test changes of it.
            conf = f"""include {REPO / "conf" / "ike" / "strongswan.conf"}
charon {{
{logging}
  plugins {{
    vici {{ socket = unix://{self.vici} }}
    kernel-espgate {{ socket = {socket} }}
  }}
}}
"""
        else:
            conf = f"""charon {{
  load_modular = no
  load = {BASE_PLUGINS} kernel-libipsec kernel-netlink socket-default vici
{logging}
  plugins {{
    vici {{ socket = unix://{self.vici} }}
  }}
}}
"""
        (self.dir / "strongswan.conf").write_text(conf)
        self.proc = None

    def start(self):
        conf = self.dir / "strongswan.conf"
        self.proc = self.topo.start(
            self.ns, "sh", "-c",
            f"mount -t tmpfs tmpfs /run && STRONGSWAN_CONF={conf} exec {CHARON}",
            log=self.dir / "charon.out")
        assert wait_for(self.vici.exists, timeout=20), f"charon {self.side} did not start: {self.text()}"
        return self

    def text(self):
        return self.log.read_text() if self.log.exists() else "(no log)"

    def swanctl(self, *args, check=True, timeout=60):
        r = subprocess.run(["swanctl", *args, "--uri", f"unix://{self.vici}"],
                           capture_output=True, text=True, timeout=timeout)
        if check and r.returncode != 0:
            raise AssertionError(f"swanctl {' '.join(args)} ({self.side}): {r.stdout}{r.stderr}\n{self.text()}")
        return r.stdout

    def install(self, certs):
        """Puts this side's certificate, key and CA (from `pki_certs`)
        in the folders swanctl reads them from: x509, private and x509ca
        beside the swanctl.conf it loads."""
        for folder, key in (("x509", "cert"), ("private", "key"), ("x509ca", "ca")):
            (self.dir / folder).mkdir(exist_ok=True)
            shutil.copy(certs[key], self.dir / folder)

    def load(self, conf, certs=None):
        """Loads a swanctl.conf (with `certs` installed first)."""
        if certs:
            self.install(certs)
        path = self.dir / "swanctl.conf"
        path.write_text(conf)
        return self.swanctl("--load-all", "--file", str(path))


def connection(local, remote, local_ts, remote_ts, esp="aes128gcm16", auth="psk", certs=None,
               encap=False, extra_child=""):
    """A swanctl.conf with one connection `gw` and its CHILD_SA `net`;
    `auth` is psk or pubkey (then `certs`: this side's cert, key and the
    CA's, from `pki_certs`, which `Charon.load` puts where swanctl reads
    them)."""
    lid, rid = f"{local[0]}.espgate.test", f"{remote[0]}.espgate.test"
    if auth == "psk":
        local_auth = f"auth = psk\n      id = {lid}"
        secrets = f"ike-1 {{\n    id-1 = {lid}\n    id-2 = {rid}\n    secret = {PSK}\n  }}"
        authorities = ""
    else:
        local_auth = f"auth = pubkey\n      id = {lid}\n      certs = {pathlib.Path(certs['cert']).name}"
        secrets = ""
        authorities = f"authorities {{\n  ca {{\n    cacert = {pathlib.Path(certs['ca']).name}\n  }}\n}}\n"
    return f"""connections {{
  gw {{
    version = 2
    local_addrs = {local[1]}
    remote_addrs = {remote[1]}
    proposals = aes128gcm16-aes256gcm16-prfsha256-x25519
    encap = {"yes" if encap else "no"}
    local {{
      {local_auth}
    }}
    remote {{
      auth = {auth}
      id = {rid}
    }}
    children {{
      net {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = {esp}
        {extra_child}
      }}
    }}
  }}
}}
secrets {{
  {secrets}
}}
{authorities}"""


def pki_certs(tmp, names):
    """A CA and a certificate for each name (`<name>.espgate.test`), made
    with strongSwan's pki; {name: {cert, key, ca}} (absolute paths)."""
    d = tmp / "pki"
    d.mkdir(exist_ok=True)

    def pki(out, *args, stdin=None):
        r = subprocess.run(["pki", *args, "--outform", "pem"], input=stdin, capture_output=True, text=True)
        assert r.returncode == 0, f"pki {' '.join(args)}: {r.stderr}"
        if out:
            out.write_text(r.stdout)
        return r.stdout

    ca_key, ca_cert = d / "ca.key.pem", d / "ca.cert.pem"
    pki(ca_key, "--gen", "--type", "ecdsa", "--size", "256")
    pki(ca_cert, "--self", "--ca", "--lifetime", "30", "--in", str(ca_key), "--type", "ecdsa",
        "--dn", "CN=espgate test CA")
    out = {}
    for n in names:
        key, cert = d / f"{n}.key.pem", d / f"{n}.cert.pem"
        pki(key, "--gen", "--type", "ecdsa", "--size", "256")
        pub = pki(None, "--pub", "--in", str(key), "--type", "ecdsa")
        pki(cert, "--issue", "--lifetime", "30", "--cacert", str(ca_cert), "--cakey", str(ca_key),
            "--type", "pub", "--dn", f"CN={n}.espgate.test", "--san", f"{n}.espgate.test", stdin=pub)
        out[n] = {"cert": str(cert), "key": str(key), "ca": str(ca_cert)}
    return out
