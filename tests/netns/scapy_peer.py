"""A minimal ESP tunnel gateway built on Scapy's ESP (not espgate's), used
as the far end of espgate in the namespace tests. It answers ARP for its
two addresses, encrypts what comes from its LAN towards the remote network
with one SA, decrypts ESP to it with another, and forwards.

    scapy_peer.py LAN WAN LAN_ADDR WAN_ADDR PEER_WAN HOST_MAC PEER_MAC
                  OUT_SPI OUT_KEY IN_SPI IN_KEY
"""

import sys

from scapy.all import ARP, IP, AsyncSniffer, Ether, conf, get_if_hwaddr
from scapy.layers.ipsec import ESP, SecurityAssociation


def main():
    lan, wan, lan_addr, wan_addr, peer_wan, host_mac, peer_mac, out_spi, out_key, in_spi, in_key = sys.argv[1:12]
    conf.verb = 0
    sa_out = SecurityAssociation(ESP, spi=int(out_spi, 0), crypt_algo="AES-GCM",
                                 crypt_key=bytes.fromhex(out_key.removeprefix("0x")),
                                 tunnel_header=IP(src=wan_addr, dst=peer_wan))
    sa_in = SecurityAssociation(ESP, spi=int(in_spi, 0), crypt_algo="AES-GCM",
                                crypt_key=bytes.fromhex(in_key.removeprefix("0x")),
                                tunnel_header=IP(src=peer_wan, dst=wan_addr))
    macs = {lan: get_if_hwaddr(lan), wan: get_if_hwaddr(wan)}
    addrs = {lan: lan_addr, wan: wan_addr}
    socks = {lan: conf.L2socket(iface=lan), wan: conf.L2socket(iface=wan)}

    def handle(pkt):
        iface = pkt.sniffed_on
        if not pkt.haslayer(Ether) or pkt[Ether].src == macs[iface]:
            return
        if pkt.haslayer(ARP):
            a = pkt[ARP]
            if a.op == 1 and a.pdst == addrs[iface]:
                socks[iface].send(Ether(src=macs[iface], dst=a.hwsrc) /
                                  ARP(op=2, hwsrc=macs[iface], psrc=a.pdst, hwdst=a.hwsrc, pdst=a.psrc))
            return
        if not pkt.haslayer(IP) or pkt[Ether].dst != macs[iface]:
            return
        ip = pkt[IP]
        if iface == wan and ip.proto == 50 and ip.dst == wan_addr:
            inner = sa_in.decrypt(ip.copy())
            inner.ttl -= 1
            del inner.chksum
            socks[lan].send(Ether(src=macs[lan], dst=host_mac) / inner)
        elif iface == lan and ip.dst != lan_addr:
            ip.ttl -= 1
            del ip.chksum
            socks[wan].send(Ether(src=macs[wan], dst=peer_mac) / sa_out.encrypt(IP(bytes(ip))))

    sniffer = AsyncSniffer(iface=[lan, wan], prn=handle, store=False)
    sniffer.start()
    print("ready", flush=True)
    sniffer.join()


if __name__ == "__main__":
    main()
