"""Sample payslips for the demo: one small PDF per employee of sample/employees.csv.

    python client_examples/make_sample_payslips.py [CSV] [FOLDER]

The figures are invented; the files are made the same way every time (reportlab's
invariant mode), so that they can be committed and compared.
"""

from __future__ import annotations

import csv
import sys
import zlib
from pathlib import Path

from reportlab.lib.pagesizes import A4
from reportlab.lib.units import mm
from reportlab.pdfgen import canvas

HERE = Path(__file__).parent


def payslip(target: Path, employee_id: str, name: str, period: str = "2026-11") -> None:
    gross = 5200 + zlib.crc32(employee_id.encode()) % 3800  # invented, stable per employee
    deductions = round(gross * 0.1345, 2)
    page = canvas.Canvas(str(target), pagesize=A4, invariant=True)
    page.setTitle(f"Lohnabrechnung {period} {name}")
    page.setFont("Helvetica-Bold", 16)
    page.drawString(20 * mm, 270 * mm, f"Lohnabrechnung {period}")
    page.setFont("Helvetica", 11)
    lines = [
        f"Mitarbeiter/in: {name} ({employee_id})",
        "Arbeitgeber: Beispiel Treuhand AG, Zürich",
        "",
        f"Bruttolohn                CHF {gross:10,.2f}",
        f"Sozialabzüge (AHV/IV/EO, ALV, BVG)  CHF {deductions:10,.2f}",
        f"Nettolohn                 CHF {gross - deductions:10,.2f}",
        "",
        "Dies ist ein Beispiel für den Test des Dienstes; die Zahlen sind erfunden.",
    ]
    for number, line in enumerate(lines):
        page.drawString(20 * mm, (255 - 7 * number) * mm, line)
    page.showPage()
    page.save()


def main() -> None:
    csv_path = Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "sample" / "employees.csv"
    folder = Path(sys.argv[2]) if len(sys.argv) > 2 else HERE / "sample" / "payslips"
    folder.mkdir(parents=True, exist_ok=True)
    with csv_path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            payslip(folder / f"{row['id']}.pdf", row["id"], row["name"])
    print(f"payslips in {folder}")


if __name__ == "__main__":
    main()
