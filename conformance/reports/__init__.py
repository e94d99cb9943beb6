"""Report writers: JUnit XML (`junit`), JSON (`json_report`), and the
plain-text renderings they and the console share (`text`)."""

from conformance.reports.json_report import load_results, results_to_dict, write_json
from conformance.reports.junit import junit_xml_string, write_junit

__all__ = ["junit_xml_string", "load_results", "results_to_dict", "write_json", "write_junit"]
