//! The first-boot wizard on the console: asks each answer in turn, with a default where
//! there is a sensible one, and asks again until the answer is usable. It reads lines and
//! writes prompts through any reader and writer, so that it can be tested with a script;
//! the binary gives it the console and a way to hide typed passwords.

use crate::answers::{
    Admin, Answers, Cluster, ClusterMode, Network, NetworkMode, Secret, Time, check_cidr,
    check_password, valid_hostname,
};
use std::io::{self, BufRead, Write};
use std::net::IpAddr;

/// The console the wizard talks to.
pub struct Console<'a, R, W> {
    input: R,
    output: W,
    /// Turns the echo of typed characters off (`true`) or on, for passwords.
    hide_input: &'a mut dyn FnMut(bool),
}

impl<'a, R: BufRead, W: Write> Console<'a, R, W> {
    /// A console over `input` and `output`.
    pub fn new(input: R, output: W, hide_input: &'a mut dyn FnMut(bool)) -> Self {
        Console {
            input,
            output,
            hide_input,
        }
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = String::new();
        if self.input.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the console closed before the wizard finished",
            ));
        }
        Ok(line.trim().to_string())
    }

    /// Asks until `check` accepts the answer (or the default, on an empty line).
    fn ask(
        &mut self,
        prompt: &str,
        default: Option<&str>,
        check: impl Fn(&str) -> Result<(), String>,
    ) -> io::Result<String> {
        loop {
            match default {
                Some(d) => write!(self.output, "{prompt} [{d}]: ")?,
                None => write!(self.output, "{prompt}: ")?,
            }
            self.output.flush()?;
            let mut answer = self.line()?;
            if answer.is_empty() {
                answer = default.unwrap_or_default().to_string();
            }
            match check(&answer) {
                Ok(()) => return Ok(answer),
                Err(problem) => writeln!(self.output, "  {problem}")?,
            }
        }
    }

    fn ask_secret(&mut self, prompt: &str) -> io::Result<String> {
        loop {
            (self.hide_input)(true);
            write!(self.output, "{prompt}: ")?;
            self.output.flush()?;
            let first = self.line();
            write!(self.output, "\nagain: ")?;
            self.output.flush()?;
            let second = self.line();
            (self.hide_input)(false);
            writeln!(self.output)?;
            let (first, second) = (first?, second?);
            if first != second {
                writeln!(self.output, "  the two passwords differ")?;
            } else if let Err(problem) = check_password(&first) {
                writeln!(self.output, "  {problem}")?;
            } else {
                return Ok(first);
            }
        }
    }

    fn ask_list(&mut self, prompt: &str, check: fn(&str) -> bool) -> io::Result<Vec<String>> {
        let answer = self.ask(prompt, Some(""), |text| {
            match text.split_whitespace().find(|item| !check(item)) {
                Some(bad) => Err(format!("{bad:?} is not usable here")),
                None => Ok(()),
            }
        })?;
        Ok(answer.split_whitespace().map(str::to_string).collect())
    }

    /// Runs the wizard.
    pub fn run(&mut self) -> io::Result<Answers> {
        writeln!(
            self.output,
            "\nPullback appliance: first boot.\nAnswer each question; Enter takes the value in \
             brackets.\n"
        )?;
        let hostname = self.ask("Host name", Some("pullback"), |h| {
            if valid_hostname(h) {
                Ok(())
            } else {
                Err("letters, digits, hyphens and dots only".into())
            }
        })?;
        let network = self.network()?;
        let ntp = self.ask_list(
            "Time servers, separated by spaces (Enter: Debian's pool)",
            |s| valid_hostname(s) || s.parse::<IpAddr>().is_ok(),
        )?;
        let password =
            self.ask_secret("Administrator password (web UI user admin, console root)")?;
        let cluster = self.cluster()?;
        Ok(Answers {
            hostname,
            network,
            time: Time { ntp },
            admin: Admin {
                password: Secret(password),
            },
            // A certificate of one's own is installed from a config disk or later in the
            // configuration; the wizard keeps the cluster's.
            tls: None,
            cluster,
            api_keys: Vec::new(),
        })
    }

    fn network(&mut self) -> io::Result<Network> {
        let mode = self.ask("Network: dhcp or static", Some("dhcp"), |m| match m {
            "dhcp" | "static" => Ok(()),
            _ => Err("dhcp or static".into()),
        })?;
        if mode == "dhcp" {
            return Ok(Network::default());
        }
        let address = self.ask("Address with prefix length (10.0.0.5/24)", None, check_cidr)?;
        let gateway = self.ask("Gateway", None, is_ip)?;
        let dns = self.ask_list("DNS servers, separated by spaces", |s| {
            s.parse::<IpAddr>().is_ok()
        })?;
        Ok(Network {
            mode: NetworkMode::Static,
            address: Some(address),
            gateway: Some(gateway),
            dns,
        })
    }

    fn cluster(&mut self) -> io::Result<Cluster> {
        let mode = self.ask(
            "Start a new cluster or join one: new or join",
            Some("new"),
            |m| match m {
                "new" | "join" => Ok(()),
                _ => Err("new or join".into()),
            },
        )?;
        if mode == "new" {
            return Ok(Cluster {
                mode: ClusterMode::New,
                node_id: 1,
                peer: None,
                join_token: None,
                advertise: None,
            });
        }
        let node_id = self.ask(
            "This node's id (unique in the cluster)",
            Some("2"),
            |id| match id.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(()),
                _ => Err("a whole number from 1".into()),
            },
        )?;
        let peer = self.ask("A member's address (https://10.0.0.1)", None, |p| {
            if p.starts_with("https://") {
                Ok(())
            } else {
                Err("an https:// URL".into())
            }
        })?;
        let token = self.ask(
            "Join token (from `pullback cluster token` on a member)",
            None,
            |t| {
                if t.starts_with("pbj1.") {
                    Ok(())
                } else {
                    Err("a token starts with pbj1.".into())
                }
            },
        )?;
        Ok(Cluster {
            mode: ClusterMode::Join,
            node_id: node_id.parse().expect("checked"),
            peer: Some(peer),
            join_token: Some(Secret(token)),
            advertise: None,
        })
    }
}

fn is_ip(text: &str) -> Result<(), String> {
    text.parse::<IpAddr>()
        .map(|_| ())
        .map_err(|_| format!("{text:?} is not an IP address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(script: &str) -> (io::Result<Answers>, String, Vec<bool>) {
        let mut output = Vec::new();
        let mut hidden = Vec::new();
        let mut hide = |on: bool| hidden.push(on);
        let result = Console::new(script.as_bytes(), &mut output, &mut hide).run();
        (result, String::from_utf8(output).unwrap(), hidden)
    }

    #[test]
    fn takes_defaults_and_asks_again_after_a_bad_answer() {
        let script = "\n\nbad host!\n\n\
                      a long passphrase\na long passphrase\n\n";
        let (answers, output, hidden) = run(script);
        let answers = answers.unwrap();
        assert_eq!(answers.hostname, "pullback");
        assert_eq!(answers.network.mode, NetworkMode::Dhcp);
        assert!(output.contains("\"host!\" is not usable here"), "{output}");
        assert!(answers.time.ntp.is_empty());
        assert_eq!(answers.cluster.mode, ClusterMode::New);
        assert_eq!(hidden, [true, false]);
        assert!(
            !output.contains("a long passphrase"),
            "the password was echoed"
        );
        assert_eq!(answers.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_static_node_that_joins() {
        let script = "pb2\nstatic\n10.0.0.6\n10.0.0.6/24\n10.0.0.1\n10.0.0.2\nntp.corp.example\n\
                      short\nshort\na long passphrase\nanother one here\n\
                      a long passphrase\na long passphrase\n\
                      join\n3\nhttps://10.0.0.5\npbj1.secret.fingerprint\n";
        let (answers, output, _) = run(script);
        let answers = answers.unwrap();
        assert!(output.contains("no prefix length"), "{output}");
        assert!(output.contains("at least 12 characters"), "{output}");
        assert!(output.contains("the two passwords differ"), "{output}");
        assert_eq!(answers.network.address.as_deref(), Some("10.0.0.6/24"));
        assert_eq!(answers.network.dns, ["10.0.0.2"]);
        assert_eq!(answers.time.ntp, ["ntp.corp.example"]);
        assert_eq!(answers.cluster.node_id, 3);
        assert_eq!(answers.cluster.peer.as_deref(), Some("https://10.0.0.5"));
        assert_eq!(answers.problems(), Vec::<String>::new());
    }

    #[test]
    fn a_closed_console_is_an_error() {
        let (answers, _, _) = run("pb1\n");
        assert_eq!(answers.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
    }
}
