// The Atelier export's CSV format (docs/dataset.md): file names, headers,
// and how one field is written. Shared by the generator and the loader.

export const FILES = {
  reviews: {
    name: 'reviews.csv',
    header: ['id', 'product_id', 'rating', 'date', 'summary', 'body', 'recommend', 'reported', 'reviewer_name', 'reviewer_email', 'response', 'helpfulness'],
  },
  photos: { name: 'reviews_photos.csv', header: ['id', 'review_id', 'url'] },
  characteristics: { name: 'characteristics.csv', header: ['id', 'product_id', 'name'] },
  ratings: { name: 'characteristic_reviews.csv', header: ['id', 'characteristic_id', 'review_id', 'value'] },
} as const;

export type FileKey = keyof typeof FILES;
export const FILE_KEYS = Object.keys(FILES) as FileKey[];

export const CHARACTERISTIC_NAMES = ['Fit', 'Length', 'Comfort', 'Quality', 'Size', 'Width'] as const;

/** A text field as the export writes it: always double-quoted, inner quotes doubled. */
export function quote(s: string): string {
  return '"' + (s.includes('"') ? s.replace(/"/g, '""') : s) + '"';
}
