//! The results file in JMeter's CSV format (JTL), one row per request, so that JMeter's own
//! tools (`jmeter -g results.jtl -o dashboard/`) can build their dashboard from a run.

use std::io::Write;

use reqwest::StatusCode;

use crate::sample::Sample;

/// The columns of JMeter 5's default CSV result file, in its order.
pub const COLUMNS: [&str; 17] = [
    "timeStamp",
    "elapsed",
    "label",
    "responseCode",
    "responseMessage",
    "threadName",
    "dataType",
    "success",
    "failureMessage",
    "bytes",
    "sentBytes",
    "grpThreads",
    "allThreads",
    "URL",
    "Latency",
    "IdleTime",
    "Connect",
];

/// Writes samples as JTL rows under a header line.
pub struct JtlWriter<W: Write> {
    csv: csv::Writer<W>,
}

impl<W: Write> JtlWriter<W> {
    /// Writes the header line.
    pub fn new(out: W) -> csv::Result<Self> {
        let mut csv = csv::Writer::from_writer(out);
        csv.write_record(COLUMNS)?;
        Ok(Self { csv })
    }

    /// Writes one row, with times in whole milliseconds as JMeter writes them. `Connect` and
    /// `IdleTime` are written as 0, because the HTTP client does
    /// not report connect time and the tool has no idle time inside a sample.
    pub fn write(&mut self, sample: &Sample) -> csv::Result<()> {
        let (code, message) = match sample.status {
            Some(code) => (
                code.to_string(),
                StatusCode::from_u16(code)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("")
                    .to_owned(),
            ),
            // JMeter's own wording for a request that got no HTTP response.
            None => (
                "Non HTTP response code: request failed".to_owned(),
                format!("Non HTTP response message: {}", sample.failure),
            ),
        };
        self.csv.write_record([
            sample.started_epoch_ms.to_string(),
            sample.elapsed.as_millis().to_string(),
            sample.label.to_owned(),
            code,
            message,
            sample.thread.clone(),
            "text".to_owned(),
            sample.success.to_string(),
            sample.failure.clone(),
            sample.bytes.to_string(),
            sample.sent_bytes.to_string(),
            sample.group_users.to_string(),
            sample.all_users.to_string(),
            sample.url.clone(),
            sample.latency.as_millis().to_string(),
            "0".to_owned(),
            "0".to_owned(),
        ])
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.csv.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sample::tests::sample;

    fn written(samples: &[Sample]) -> String {
        let mut out = Vec::new();
        {
            let mut writer = JtlWriter::new(&mut out).unwrap();
            for s in samples {
                writer.write(s).unwrap();
            }
            writer.flush().unwrap();
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn jtl_header_names_jmeter_columns() {
        let text = written(&[]);
        assert_eq!(
            text.trim_end(),
            "timeStamp,elapsed,label,responseCode,responseMessage,threadName,dataType,success,\
             failureMessage,bytes,sentBytes,grpThreads,allThreads,URL,Latency,IdleTime,Connect"
        );
    }

    #[test]
    fn jtl_row_carries_sample_fields() {
        let text = written(&[sample("health", 1500, Some(202), true)]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 1);
        let row = &rows[0];
        assert_eq!(&row[0], "1700000001500");
        assert_eq!(&row[1], "12");
        assert_eq!(&row[2], "health");
        assert_eq!(&row[3], "202");
        assert_eq!(&row[4], "Accepted");
        assert_eq!(&row[5], "health 1-1");
        assert_eq!(&row[7], "true");
        assert_eq!(&row[8], "");
        assert_eq!(&row[9], "100");
        assert_eq!(&row[11], "1");
        assert_eq!(&row[12], "2");
        assert_eq!(&row[13], "http://127.0.0.1:8003/health");
        assert_eq!(&row[14], "10");
    }

    #[test]
    fn jtl_row_quotes_and_marks_failures() {
        let mut failed = sample("status, multiple", 0, None, false);
        failed.failure = "timed out, \"no\" response".into();
        let text = written(&[failed]);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let row = reader.records().next().unwrap().unwrap();
        assert_eq!(row.len(), COLUMNS.len());
        assert_eq!(&row[2], "status, multiple");
        assert!(row[3].starts_with("Non HTTP response code"), "{}", &row[3]);
        assert_eq!(&row[7], "false");
        assert_eq!(&row[8], "timed out, \"no\" response");
    }
}
