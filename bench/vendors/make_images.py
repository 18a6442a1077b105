"""The 15 images of the vendor comparison (README, "Reproduce your vendor's preprocessing"): photos
cut from models/images (5 square, 10 not) and synthetic text pages in four orientations.

    python bench/vendors/make_images.py OUT_DIR
"""
import sys
from pathlib import Path
from PIL import Image, ImageDraw, ImageFont
import numpy as np

out = Path(sys.argv[1])
out.mkdir(parents=True, exist_ok=True)
src = Path(__file__).resolve().parents[2] / "models" / "images"
astro = Image.open(src / "astronaut.png").convert("RGB")
astro.save(out / "astronaut_sq512.png")
astro.crop((100, 0, 400, 300)).save(out / "face_sq300.png")
astro.crop((0, 50, 300, 512)).save(out / "astro_tall300x462.png")
Image.open(src / "chelsea.png").convert("RGB").save(out / "chelsea_451x300.png")
Image.open(src / "coffee.png").convert("RGB").save(out / "coffee_600x400.png")
Image.open(src / "rocket.jpg").save(out / "rocket_640x427.jpg", quality=95)
Image.open(src / "coffee.png").convert("L").resize((333, 333), Image.BICUBIC).save(out / "coffee_grey_sq333.png")
Image.open(src / "chelsea.png").convert("RGB").resize((900, 200), Image.BICUBIC).save(out / "chelsea_wide900x200.png")

rng = np.random.default_rng(0)
words = ["lorem", "ipsum", "dolor", "sit", "amet", "invoice", "total", "date", "page", "report",
         "section", "the", "of", "and", "payment", "due", "account", "number", "signature"]
def page(w, h, seed):
    r = np.random.default_rng(seed)
    im = Image.new("RGB", (w, h), (250, 250, 245))
    d = ImageDraw.Draw(im)
    big = ImageFont.load_default(size=max(18, w // 18))
    small = ImageFont.load_default(size=max(11, w // 40))
    d.text((w // 12, h // 20), "QUARTERLY REPORT", fill=(10, 10, 10), font=big)
    y = h // 20 + w // 10
    while y < h - h // 10:
        x = w // 12
        line = []
        while True:
            wd = words[r.integers(len(words))]
            if x + small.getlength(" ".join(line + [wd])) > w - w // 12:
                break
            line.append(wd)
        d.text((x, y), " ".join(line), fill=(20, 20, 30), font=small)
        y += int(small.size * 1.6)
        if r.random() < 0.12:
            y += small.size
    return im

p = page(600, 800, 1)
for k, ang in enumerate((0, 90, 180, 270)):
    p.rotate(-ang, expand=True).save(out / f"page600x800_rot{ang}.png")   # rotated ang clockwise
page(500, 500, 2).save(out / "page_sq500.png")
page(500, 500, 2).rotate(-90, expand=True).save(out / "page_sq500_rot90.png")
page(420, 594, 3).save(out / "page_a5_420x594.jpg", quality=90)
for f in sorted(out.iterdir()):
    print(f.name, Image.open(f).size, Image.open(f).mode)
