//! Where nodes and clients reach a workload (a Registry's or a mirror's), read back from the Service as the API server
//! stored it (pure). Nodes resolve names with the host's resolver, not cluster DNS, so the
//! allocated ClusterIP (and a load balancer's address, once it has one, and the spec's
//! `service.externalHosts` on the NodePort or the Service port) must appear in the serving
//! certificate's SANs, in every pull Secret's `auths` and in `status.endpoint`.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Service;

use super::Workload;
use crate::operator::crd::ServiceType;

/// The names and addresses of a workload's Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Addresses {
    /// The Service port every address is reached on.
    pub port: i32,
    /// The allocated ClusterIP; `None` until the API server has allocated one.
    pub cluster_ip: Option<IpAddr>,
    /// DNS names: the Service's in-cluster names, then load-balancer host names.
    pub dns: Vec<String>,
    /// IP addresses: the ClusterIP, then load-balancer ingress IPs.
    pub ips: Vec<IpAddr>,
    /// The spec's external hosts (names or IPs) with the port they are reached on: their
    /// own, else the NodePort of a NodePort Service, else the Service port.
    pub external: Vec<(String, i32)>,
}

/// The in-cluster DNS names of the workload's Service.
pub fn service_dns_names(d: &Workload) -> Vec<String> {
    let (n, ns) = (&d.name, &d.namespace);
    vec![
        n.clone(),
        format!("{n}.{ns}"),
        format!("{n}.{ns}.svc"),
        format!("{n}.{ns}.svc.cluster.local"),
    ]
}

impl Addresses {
    /// The addresses of `service` (as returned by its apply) for the workload `d`.
    pub fn of(d: &Workload, service: &Service) -> Addresses {
        let cluster_ip = service
            .spec
            .as_ref()
            .and_then(|s| s.cluster_ip.as_deref())
            .and_then(|ip| ip.parse::<IpAddr>().ok());
        let ingress = service
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .cloned()
            .unwrap_or_default();
        let mut dns = service_dns_names(d);
        let mut ips: Vec<IpAddr> = cluster_ip.into_iter().collect();
        for entry in ingress {
            if let Some(ip) = entry.ip.as_deref().and_then(|ip| ip.parse().ok())
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
            if let Some(host) = entry.hostname
                && !dns.contains(&host)
            {
                dns.push(host);
            }
        }
        let node_port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref()?.first()?.node_port)
            .filter(|_| d.service.type_ == ServiceType::NodePort);
        let default_port = node_port.unwrap_or(d.service.port);
        let mut external: Vec<(String, i32)> = Vec::new();
        for entry in &d.service.external_hosts {
            let (host, port) = split_host_port(entry);
            let address = (host.to_owned(), port.unwrap_or(default_port));
            if !external.contains(&address) {
                external.push(address);
            }
        }
        Addresses {
            port: d.service.port,
            cluster_ip,
            dns,
            ips,
            external,
        }
    }

    /// DNS names for the serving certificate: the Service's, a load balancer's, and the
    /// external hosts that are names.
    pub fn san_dns(&self) -> Vec<String> {
        let mut names = self.dns.clone();
        for (host, _) in &self.external {
            if host.parse::<IpAddr>().is_err() && !names.contains(host) {
                names.push(host.clone());
            }
        }
        names
    }

    /// IP addresses for the serving certificate: the ClusterIP, a load balancer's, and the
    /// external hosts that are addresses.
    pub fn san_ips(&self) -> Vec<IpAddr> {
        let mut ips = self.ips.clone();
        for (host, _) in &self.external {
            if let Ok(ip) = host.parse::<IpAddr>()
                && !ips.contains(&ip)
            {
                ips.push(ip);
            }
        }
        ips
    }

    /// `host:port` keys a client or a node may write in an image reference: every IP
    /// address first (nodes can use those), then the fully qualified in-cluster names and the
    /// load balancer's names.
    pub fn hosts(&self) -> Vec<String> {
        let ips = self
            .ips
            .iter()
            .map(|ip| host_port(&ip.to_string(), self.port));
        // `name` and `name.namespace` need a search domain, which image references never use.
        let names = self.dns.iter().skip(2).map(|h| host_port(h, self.port));
        let external = self.external.iter().map(|(h, p)| host_port(h, *p));
        let mut hosts: Vec<String> = Vec::new();
        for host in ips.chain(names).chain(external) {
            if !hosts.contains(&host) {
                hosts.push(host);
            }
        }
        hosts
    }

    /// The address for `status.endpoint`: the ClusterIP and port, reachable from nodes;
    /// the Service's DNS name until an IP is allocated.
    pub fn endpoint(&self) -> String {
        match self.cluster_ip {
            Some(ip) => host_port(&ip.to_string(), self.port),
            None => self
                .dns
                .iter()
                .find(|h| h.ends_with(".svc"))
                .map(|h| host_port(h, self.port))
                .unwrap_or_default(),
        }
    }

    /// The SAN list recorded next to a serving certificate, to tell when it changes.
    pub fn sans_record(&self) -> String {
        let mut all = self.san_dns();
        all.extend(self.san_ips().iter().map(IpAddr::to_string));
        all.join(",")
    }
}

/// An external host entry as host and optional port: `host`, `host:port`, `[v6]:port`, `v6`.
fn split_host_port(entry: &str) -> (&str, Option<i32>) {
    if let Some(rest) = entry.strip_prefix('[') {
        let (host, after) = rest.split_once(']').unwrap_or((rest, ""));
        let port = after.strip_prefix(':').and_then(|p| p.parse().ok());
        return (host, port);
    }
    match entry.rsplit_once(':') {
        // More than one colon without brackets: a bare IPv6 address.
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn host_port(host: &str, port: i32) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::operator::registry::validate::tests::registry;
    use crate::operator::registry::validate::validate;

    fn addresses(spec: serde_json::Value, service: serde_json::Value) -> Addresses {
        let d = validate(&registry(spec), &Default::default(), "img").unwrap();
        Addresses::of(&d.workload, &serde_json::from_value(service).unwrap())
    }

    #[test]
    fn the_allocated_cluster_ip_comes_first_and_is_the_endpoint() {
        let a = addresses(
            json!({}),
            json!({"spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 5000}]}}),
        );
        assert_eq!(
            a.hosts(),
            [
                "10.96.3.4:5000",
                "reg.team.svc:5000",
                "reg.team.svc.cluster.local:5000"
            ]
        );
        assert_eq!(a.endpoint(), "10.96.3.4:5000");
        assert_eq!(
            a.sans_record(),
            "reg,reg.team,reg.team.svc,reg.team.svc.cluster.local,10.96.3.4"
        );
    }

    #[test]
    fn load_balancers_and_ipv6_are_included() {
        let a = addresses(
            json!({"service": {"type": "LoadBalancer", "port": 443}}),
            json!({"spec": {"clusterIP": "fd00::12"},
                   "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "reg.example.com"}]}}}),
        );
        assert_eq!(a.endpoint(), "[fd00::12]:443");
        let hosts = a.hosts();
        assert_eq!(hosts[..2], ["[fd00::12]:443", "203.0.113.7:443"]);
        assert!(
            hosts.contains(&"reg.example.com:443".to_owned()),
            "{hosts:?}"
        );
        assert!(a.dns.contains(&"reg.example.com".to_owned()));
    }

    #[test]
    fn external_hosts_use_the_node_port_unless_they_name_a_port() {
        let a = addresses(
            json!({"service": {"type": "NodePort",
                   "externalHosts": ["192.168.1.20", "reg.example.com:443", "[fd00::1]", "fd00::2"]}}),
            json!({"spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 5000, "nodePort": 30500}]}}),
        );
        assert_eq!(
            a.hosts(),
            [
                "10.96.3.4:5000",
                "reg.team.svc:5000",
                "reg.team.svc.cluster.local:5000",
                "192.168.1.20:30500",
                "reg.example.com:443",
                "[fd00::1]:30500",
                "[fd00::2]:30500"
            ]
        );
        assert_eq!(
            a.sans_record(),
            "reg,reg.team,reg.team.svc,reg.team.svc.cluster.local,reg.example.com,10.96.3.4,192.168.1.20,fd00::1,fd00::2"
        );
        assert_eq!(a.endpoint(), "10.96.3.4:5000");
        let plain = addresses(
            json!({"service": {"externalHosts": ["reg.example.com"]}}),
            json!({"spec": {"clusterIP": "10.96.3.4", "ports": [{"port": 5000, "nodePort": 30500}]}}),
        );
        assert_eq!(
            plain.hosts().last().map(String::as_str),
            Some("reg.example.com:5000"),
            "no NodePort on a ClusterIP Service"
        );
    }

    #[test]
    fn before_allocation_the_endpoint_is_the_service_name() {
        let a = addresses(json!({}), json!({"spec": {}}));
        assert_eq!(a.endpoint(), "reg.team.svc:5000");
        assert!(a.ips.is_empty());
    }
}
