//! Where first-boot answers come from when nobody sits at the console: a small config disk
//! (a FAT filesystem labelled `PULLBACKCFG`, as FAT labels have at most 11 characters,
//! holding `pullback-firstboot.toml`), or the cloud's user data.
//!
//! User data is read from the AWS instance metadata service only when both hold: the image
//! is set up for it (`user_data = "aws"` in the ESP's `/pullback/appliance.conf`, which the
//! VHDX built for AWS carries), and the firmware says the machine is an EC2 instance. Any
//! other machine never sends a packet to the metadata address.

use crate::layout::Layout;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// The answers file on a config disk.
pub const ANSWERS_FILE: &str = "pullback-firstboot.toml";
/// The config disk's filesystem label.
pub const CONFIG_LABEL: &str = "PULLBACKCFG";

/// Where the image may read user data from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserDataSource {
    /// Nowhere: a config disk or the console.
    None,
    /// The AWS instance metadata service (IMDSv2).
    Aws,
}

/// Reads the image's choice from the ESP; `None` when the file says nothing else.
pub fn user_data_source(layout: &Layout) -> UserDataSource {
    let path = layout.esp().join("pullback/appliance.conf");
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let chosen = text.lines().find_map(|line| {
        let (key, value) = line.split_once('=')?;
        (key.trim() == "user_data").then(|| value.trim().trim_matches('"').to_string())
    });
    match chosen.as_deref() {
        Some("aws") => UserDataSource::Aws,
        _ => UserDataSource::None,
    }
}

/// Whether the firmware says this is an EC2 instance (SMBIOS vendor strings).
pub fn is_ec2(layout: &Layout) -> bool {
    ["sys_vendor", "board_vendor", "bios_vendor"]
        .iter()
        .any(|field| {
            let path = layout.other(&format!("/sys/class/dmi/id/{field}"));
            std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "Amazon EC2")
        })
}

/// An instance metadata service client (IMDSv2: a session token, then the user data).
#[derive(Debug, Clone)]
pub struct Imds {
    address: SocketAddr,
    timeout: Duration,
}

impl Imds {
    /// The AWS service. Only [`user_data_source`] and [`is_ec2`] together lead here.
    pub fn aws() -> Imds {
        Imds::at(SocketAddr::from(([169, 254, 169, 254], 80)))
    }

    /// A service at `address` (tests run one on loopback).
    pub fn at(address: SocketAddr) -> Imds {
        Imds {
            address,
            timeout: Duration::from_secs(3),
        }
    }

    /// The instance's user data, `None` when it has none.
    pub fn user_data(&self) -> io::Result<Option<String>> {
        let (status, token) = self.request(
            "PUT",
            "/latest/api/token",
            "X-aws-ec2-metadata-token-ttl-seconds: 300",
        )?;
        if status != 200 {
            return Err(io::Error::other(format!(
                "the metadata service answered {status} to the token request"
            )));
        }
        let token = String::from_utf8_lossy(&token).trim().to_string();
        let (status, body) = self.request(
            "GET",
            "/latest/user-data",
            &format!("X-aws-ec2-metadata-token: {token}"),
        )?;
        match status {
            200 => Ok(Some(String::from_utf8_lossy(&body).into_owned())),
            404 => Ok(None),
            other => Err(io::Error::other(format!(
                "the metadata service answered {other} to the user data request"
            ))),
        }
    }

    fn request(&self, method: &str, path: &str, header: &str) -> io::Result<(u16, Vec<u8>)> {
        let mut stream = TcpStream::connect_timeout(&self.address, self.timeout)?;
        stream.set_read_timeout(Some(self.timeout))?;
        stream.set_write_timeout(Some(self.timeout))?;
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\n{header}\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
            self.address.ip()
        );
        stream.write_all(request.as_bytes())?;
        let mut response = Vec::new();
        stream.take(1 << 20).read_to_end(&mut response)?;
        parse_response(&response)
    }
}

fn parse_response(response: &[u8]) -> io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, what.to_string());
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("the metadata service's answer has no header end"))?;
    let head = String::from_utf8_lossy(&response[..split]);
    let body = &response[split + 4..];
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("the metadata service's answer has no status"))?;
    let chunked = head.lines().any(|line| {
        line.to_ascii_lowercase().starts_with("transfer-encoding:") && line.contains("chunked")
    });
    let body = if chunked {
        dechunk(body).ok_or_else(|| bad("bad chunked body"))?
    } else {
        body.to_vec()
    };
    Ok((status, body))
}

fn dechunk(mut body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = body.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&body[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(body.get(..size)?);
        body = body.get(size + 2..)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    /// A metadata service on loopback that answers the token and user-data requests.
    fn fake_imds(
        user_data: Option<&'static str>,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let handle = std::thread::spawn(move || {
            let mut requests = Vec::new();
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().unwrap();
                let mut request = Vec::new();
                let mut buffer = [0u8; 4096];
                while !request.ends_with(b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).unwrap();
                    assert!(n > 0, "the client closed mid-request");
                    request.extend_from_slice(&buffer[..n]);
                }
                let request = String::from_utf8_lossy(&request).into_owned();
                let reply = if request.starts_with("PUT /latest/api/token") {
                    "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\ntoken".to_string()
                } else if !request.contains("X-aws-ec2-metadata-token: token") {
                    "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string()
                } else if let Some(data) = user_data {
                    format!(
                        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{data}\r\n0\r\n\r\n",
                        data.len()
                    )
                } else {
                    "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n".to_string()
                };
                stream.write_all(reply.as_bytes()).unwrap();
                requests.push(request);
            }
            requests
        });
        (address, handle)
    }

    #[test]
    fn reads_user_data_with_a_session_token() {
        let (address, server) = fake_imds(Some("hostname = \"pb1\"\n"));
        let data = Imds::at(address).user_data().unwrap();
        assert_eq!(data.as_deref(), Some("hostname = \"pb1\"\n"));
        let requests = server.join().unwrap();
        assert!(requests[0].contains("X-aws-ec2-metadata-token-ttl-seconds: 300"));
        assert!(requests[1].starts_with("GET /latest/user-data"));

        let (address, server) = fake_imds(None);
        assert_eq!(Imds::at(address).user_data().unwrap(), None);
        server.join().unwrap();
    }

    #[test]
    fn metadata_is_read_only_when_the_image_and_the_firmware_say_aws() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::at(dir.path());
        assert_eq!(user_data_source(&layout), UserDataSource::None);
        assert!(!is_ec2(&layout));
        std::fs::create_dir_all(dir.path().join("efi/pullback")).unwrap();
        std::fs::write(
            dir.path().join("efi/pullback/appliance.conf"),
            "user_data = \"aws\"\n",
        )
        .unwrap();
        assert_eq!(user_data_source(&layout), UserDataSource::Aws);
        std::fs::create_dir_all(dir.path().join("sys/class/dmi/id")).unwrap();
        std::fs::write(dir.path().join("sys/class/dmi/id/sys_vendor"), "QEMU\n").unwrap();
        assert!(!is_ec2(&layout));
        std::fs::write(
            dir.path().join("sys/class/dmi/id/sys_vendor"),
            "Amazon EC2\n",
        )
        .unwrap();
        assert!(is_ec2(&layout));
    }
}
