//! The database servers CellServDB lists for one cell. The format (OpenAFS's
//! `afsconf_OpenInternal`): a line `>cell #comment` opens a cell's section; each following
//! line `ADDRESS #hostname` until the next `>` is one of its database servers; `#` lines and
//! blank lines are ignored. A line in the section that is not an IPv4 address is reported,
//! not skipped: a machine afskeys cannot read is a machine it cannot account for.

use std::net::{IpAddr, Ipv4Addr};

/// One database server line of the cell's section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbLine {
    /// 1-based line number in the file.
    pub line: usize,
    pub addr: IpAddr,
    /// The host name in the line's comment, if any.
    pub name: Option<String>,
}

/// Why the cell's section could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CsdbError {
    #[error("has no section for cell {0} (a line \">{0}\")")]
    NoSection(String),
    #[error("line {line}: {text:?} is not \"ADDRESS #hostname\"")]
    BadLine { line: usize, text: String },
}

/// The database servers of `cell` in CellServDB's text (cell names compare without case).
pub fn db_servers(text: &str, cell: &str) -> Result<Vec<DbLine>, CsdbError> {
    let mut in_cell = false;
    let mut found = false;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if let Some(rest) = line.strip_prefix('>') {
            let name = rest.split(['#', ' ', '\t']).next().unwrap_or("");
            in_cell = name.eq_ignore_ascii_case(cell);
            found |= in_cell;
            continue;
        }
        if !in_cell || line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (addr, comment) = match line.split_once('#') {
            Some((a, c)) => (a.trim(), Some(c.trim())),
            None => (line, None),
        };
        let addr: Ipv4Addr = addr.parse().map_err(|_| CsdbError::BadLine {
            line: i + 1,
            text: crate::child::clean(line),
        })?;
        out.push(DbLine {
            line: i + 1,
            addr: IpAddr::V4(addr),
            name: comment
                .and_then(|c| c.split_whitespace().next())
                .map(|c| c.trim_start_matches('[').trim_end_matches(']').to_string()),
        });
    }
    if !found {
        return Err(CsdbError::NoSection(cell.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_cells_own_section_counts() {
        let t = ">other.org #Other\n10.0.0.9 #x.other.org\n\
                 >Example.COM   #Example cell\n10.0.0.1\t#db1.example.com\n\
                 # a comment\n\n10.0.0.2 #[db2.example.com]\n10.0.0.3\n>third\n10.0.0.4 #y\n";
        let v = db_servers(t, "example.com").unwrap();
        assert_eq!(
            v,
            vec![
                DbLine {
                    line: 4,
                    addr: "10.0.0.1".parse().unwrap(),
                    name: Some("db1.example.com".into())
                },
                DbLine {
                    line: 7,
                    addr: "10.0.0.2".parse().unwrap(),
                    name: Some("db2.example.com".into())
                },
                DbLine {
                    line: 8,
                    addr: "10.0.0.3".parse().unwrap(),
                    name: None
                },
            ]
        );
    }

    #[test]
    fn a_missing_section_or_a_bad_line_is_an_error() {
        assert_eq!(
            db_servers(">a.org\n1.2.3.4 #x\n", "b.org"),
            Err(CsdbError::NoSection("b.org".into()))
        );
        let e = db_servers(">b.org\ndb1.b.org #x\n", "b.org").unwrap_err();
        assert_eq!(
            e.to_string(),
            "line 2: \"db1.b.org #x\" is not \"ADDRESS #hostname\""
        );
        assert_eq!(db_servers(">b.org #empty\n", "b.org"), Ok(vec![]));
    }
}
