"""A batch result as a survey: tables read fast (`tables`), the filter language (`filters`),
the review sidecar (`review`), rotation-period folding (`rotation`) and the `Survey`
itself (`core`).
"""
