import datasets


def load(**kwargs):
    sources = ["ab", "cde", "x", "hello", "zz", "pqr"]
    return datasets.DatasetDict({"test": datasets.Dataset.from_list([{"source": s} for s in sources])})


def process_results(doc, results):
    return {"exact_match": float(results[0].strip() == doc["source"])}
