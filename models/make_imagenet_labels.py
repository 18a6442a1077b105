"""Write models/imagenet_labels.txt (dev-only helper).

Source: the ImageNet-1k class metadata shipped inside the PyPI package
``timm`` (Apache-2.0): ``timm/data/_info/imagenet_synsets.txt`` (the 1000
WordNet synset ids in standard class-index order, i.e. sorted) and
``timm/data/_info/imagenet_synset_to_lemma.txt`` (synset id -> WordNet
lemmas). Each output line is the lemma string for that class index, exactly as
``timm.data.ImageNetInfo().label_descriptions()`` returns it
(e.g. line 282 (index 281) = "tabby, tabby cat").

timm is not installed (it would pull torchvision); only its wheel is read:

    pip download timm --no-deps -d /tmp/timm_whl
    python models/make_imagenet_labels.py /tmp/timm_whl/timm-*.whl
"""
import os
import sys
import zipfile


def main(wheel: str) -> None:
    with zipfile.ZipFile(wheel) as z:
        syn = z.read("timm/data/_info/imagenet_synsets.txt").decode("utf-8").split()
        lem = {}
        for line in z.read("timm/data/_info/imagenet_synset_to_lemma.txt").decode("utf-8").splitlines():
            if line.strip():
                k, v = line.split("\t", 1)
                lem[k] = v.strip()
    assert len(syn) == 1000 and len(set(syn)) == 1000 and syn == sorted(syn)
    labels = [lem[s] for s in syn]
    assert all(labels) and not any("\n" in s for s in labels)
    out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "imagenet_labels.txt")
    with open(out, "w", encoding="utf-8") as f:
        f.write("\n".join(labels) + "\n")
    print(f"wrote {out}: {len(labels)} labels; 281={labels[281]!r} 967={labels[967]!r}")


if __name__ == "__main__":
    main(sys.argv[1])
