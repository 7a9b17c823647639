//! SOAP faults carrying a Parlay X `ServiceException` / `PolicyException`: types, encoder, decoder.

use std::fmt;

use super::ns::NS_COMMON;
use super::xml::{
    ENVELOPE_CLOSE, Elem, Envelope, SoapError, esc_len, push_elem, start_envelope, truncate,
};

/// Which Parlay X exception a fault detail carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExceptionKind {
    Service,
    Policy,
}

impl ExceptionKind {
    /// Element name used in the detail (`ServiceException` / `PolicyException`).
    pub fn element_name(self) -> &'static str {
        match self {
            ExceptionKind::Service => "ServiceException",
            ExceptionKind::Policy => "PolicyException",
        }
    }
}

/// Parlay X exception found in a fault `detail`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExceptionDetail {
    pub kind: ExceptionKind,
    /// e.g. `SVC0001`, `POL0003`.
    pub message_id: String,
    pub text: String,
    pub variables: Vec<String>,
}

/// A SOAP 1.1 fault.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fault {
    /// QName text, e.g. `soapenv:Server` (the encoder declares the `soapenv` prefix).
    pub faultcode: String,
    pub faultstring: String,
    pub exception: Option<ExceptionDetail>,
}

impl Fault {
    /// `soapenv:Server` fault carrying a `ServiceException`.
    pub fn service(message_id: &str, text: &str, variables: Vec<String>) -> Self {
        Self::with_exception(ExceptionKind::Service, message_id, text, variables)
    }

    /// `soapenv:Server` fault carrying a `PolicyException`.
    pub fn policy(message_id: &str, text: &str, variables: Vec<String>) -> Self {
        Self::with_exception(ExceptionKind::Policy, message_id, text, variables)
    }

    fn with_exception(
        kind: ExceptionKind,
        message_id: &str,
        text: &str,
        variables: Vec<String>,
    ) -> Self {
        Fault {
            faultcode: "soapenv:Server".to_owned(),
            faultstring: format!("{message_id}: {text}"),
            exception: Some(ExceptionDetail {
                kind,
                message_id: message_id.to_owned(),
                text: text.to_owned(),
                variables,
            }),
        }
    }

    /// The Parlay X message id (`SVC0001`, `POL0003`, …) if a detail was present.
    pub fn message_id(&self) -> Option<&str> {
        self.exception.as_ref().map(|e| e.message_id.as_str())
    }
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.faultcode, self.faultstring)?;
        if let Some(e) = &self.exception {
            write!(f, " ({:?} {}: {}", e.kind, e.message_id, e.text)?;
            if !e.variables.is_empty() {
                write!(f, " [{}]", e.variables.join(", "))?;
            }
            write!(f, ")")?;
        }
        Ok(())
    }
}

/// Writes the standalone `<ns2:ServiceException xmlns:ns2=…>` (or PolicyException) element.
pub fn write_exception_detail(out: &mut String, e: &ExceptionDetail) {
    let name = e.kind.element_name();
    out.push_str("<ns2:");
    out.push_str(name);
    out.push_str(" xmlns:ns2=\"");
    out.push_str(NS_COMMON);
    out.push_str("\">");
    push_elem(out, "", "messageId", &e.message_id);
    push_elem(out, "", "text", &e.text);
    for v in &e.variables {
        push_elem(out, "", "variables", v);
    }
    out.push_str("</ns2:");
    out.push_str(name);
    out.push('>');
}

/// The exception detail element alone (with its namespace declaration).
pub fn encode_exception_detail(e: &ExceptionDetail) -> String {
    let mut out = String::with_capacity(256);
    write_exception_detail(&mut out, e);
    out
}

/// Full SOAP 1.1 fault envelope (send it with HTTP 500).
pub fn encode_fault(fault: &Fault) -> String {
    let mut out = start_envelope(400 + esc_len(&fault.faultstring));
    out.push_str("<soapenv:Body><soapenv:Fault>");
    push_elem(&mut out, "", "faultcode", &fault.faultcode);
    push_elem(&mut out, "", "faultstring", &fault.faultstring);
    if let Some(e) = &fault.exception {
        out.push_str("<detail>");
        write_exception_detail(&mut out, e);
        out.push_str("</detail>");
    }
    out.push_str("</soapenv:Fault></soapenv:Body>");
    out.push_str(ENVELOPE_CLOSE);
    out
}

pub(super) fn decode_fault_elem(f: &Elem) -> Fault {
    // SOAP 1.1: faultcode/faultstring; SOAP 1.2: Code/Value, Reason/Text.
    let faultcode = f
        .child_text("faultcode")
        .or_else(|| f.child("Code").and_then(|c| c.child_text("Value")))
        .unwrap_or_default();
    let faultstring = f
        .child_text("faultstring")
        .or_else(|| f.child("Reason").and_then(|c| c.child_text("Text")))
        .unwrap_or_default();
    let detail = f.child("detail").or_else(|| f.child("Detail"));
    let exception = detail.and_then(|d| {
        d.children.iter().find_map(|c| {
            let kind = match c.name.as_str() {
                "ServiceException" | "ServiceExceptionDetail" => ExceptionKind::Service,
                "PolicyException" | "PolicyExceptionDetail" => ExceptionKind::Policy,
                _ => return None,
            };
            Some(ExceptionDetail {
                kind,
                message_id: c.child_text("messageId").unwrap_or_default(),
                text: c.child_text("text").unwrap_or_default(),
                variables: c
                    .children_named("variables")
                    .map(|v| v.text.trim().to_owned())
                    .collect(),
            })
        })
    });
    Fault {
        faultcode,
        faultstring,
        exception,
    }
}

/// Decodes a fault envelope. Returns `Ok(fault)` if the body is a fault,
/// `Err(UnexpectedBody)` if it is something else.
pub fn decode_fault(xml: &[u8]) -> Result<Fault, SoapError> {
    let env = Envelope::parse(xml)?;
    match env.body_child() {
        Err(SoapError::Fault(f)) => Ok(*f),
        Err(e) => Err(e),
        Ok(other) => Err(SoapError::UnexpectedBody(truncate(&other.name, 80))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connectors::sdp::parlayx::*;

    #[test]
    fn fault_round_trip() {
        for f in [
            Fault::service(
                "SVC0002",
                "Invalid input value for message part %1",
                vec!["addresses".into()],
            ),
            Fault::policy("POL0001", "A policy error occurred", vec![]),
            Fault {
                faultcode: "soapenv:Client".into(),
                faultstring: "bad <thing> & co".into(),
                exception: None,
            },
        ] {
            let xml = encode_fault(&f);
            match decode_send_sms_response(xml.as_bytes()) {
                Err(SoapError::Fault(got)) => assert_eq!(*got, f),
                other => panic!("expected fault, got {other:?}"),
            }
            assert_eq!(decode_fault(xml.as_bytes()).unwrap(), f);
            assert!(matches!(
                decode_notification(xml.as_bytes()),
                Err(SoapError::Fault(_))
            ));
        }
    }

    #[test]
    fn fault_decoding_xsd_style_detail() {
        let xml = r#"<soapenv:Envelope xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/">
<soapenv:Body><soapenv:Fault>
  <faultcode>soapenv:Server</faultcode>
  <faultstring>Service error</faultstring>
  <detail>
    <ns2:ServiceException xmlns:ns2="http://www.csapi.org/schema/parlayx/common/v2_1">
      <messageId>SVC0002</messageId>
      <text>Invalid input value for message part %1</text>
      <variables>addresses</variables>
    </ns2:ServiceException>
  </detail>
</soapenv:Fault></soapenv:Body></soapenv:Envelope>"#;
        let err = decode_send_sms_response(xml.as_bytes()).unwrap_err();
        let f = err.as_fault().unwrap();
        assert_eq!(f.faultcode, "soapenv:Server");
        assert_eq!(f.faultstring, "Service error");
        let e = f.exception.as_ref().unwrap();
        assert_eq!(e.kind, ExceptionKind::Service);
        assert_eq!(e.message_id, "SVC0002");
        assert_eq!(e.text, "Invalid input value for message part %1");
        assert_eq!(e.variables, vec!["addresses"]);
        assert!(err.to_string().contains("SVC0002"));
    }

    #[test]
    fn fault_decoding_vumi_style_detail() {
        let xml = r#"<S:Envelope xmlns:S="http://schemas.xmlsoap.org/soap/envelope/">
<S:Body><S:Fault>
  <faultcode>S:Server</faultcode>
  <faultstring>Policy</faultstring>
  <detail>
    <ns2:PolicyExceptionDetail xmlns:ns2="http://www.csapi.org/schema/parlayx/common/v2_1">
      <messageId>POL0003</messageId>
      <text>Too many addresses specified in message part %1</text>
      <variables>addresses</variables>
      <variables>10</variables>
    </ns2:PolicyExceptionDetail>
  </detail>
</S:Fault></S:Body></S:Envelope>"#;
        let f = decode_fault(xml.as_bytes()).unwrap();
        assert_eq!(f.message_id(), Some("POL0003"));
        let e = f.exception.unwrap();
        assert_eq!(e.kind, ExceptionKind::Policy);
        assert_eq!(e.variables, vec!["addresses", "10"]);
        // ServiceExceptionDetail too
        let xml2 = xml
            .replace("PolicyExceptionDetail", "ServiceExceptionDetail")
            .replace("POL0003", "SVC0001");
        let f2 = decode_fault(xml2.as_bytes()).unwrap();
        let e2 = f2.exception.unwrap();
        assert_eq!(
            (e2.kind, e2.message_id.as_str()),
            (ExceptionKind::Service, "SVC0001")
        );
    }
}
